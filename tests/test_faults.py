"""Faults and bad input on the network: each gives asyncio's exception, connection_lost
runs exactly once, and no file descriptor is left behind."""

import asyncio
import socket
import struct
import sys

import pytest

import ferroloop
from netutil import make_recorder, open_fds


@pytest.fixture
def fds_checked(loop):
    """Counts open fds around the test body: nothing may leak."""
    before = open_fds()
    yield loop
    loop.run_until_complete(asyncio.sleep(0.01))
    assert open_fds() <= before


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused(fds_checked):
    loop = fds_checked

    async def main():
        with pytest.raises(ConnectionRefusedError, match="Connect call failed"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", dead_port())
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", dead_port())

    loop.run_until_complete(main())


def test_connection_refused_all_errors(fds_checked):
    loop = fds_checked
    if sys.version_info < (3, 12) and not isinstance(loop, ferroloop.Loop):
        pytest.skip("all_errors= is 3.12+ in asyncio (ferroloop has it on 3.11 too)")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", dead_port(), all_errors=True)
        assert isinstance(info.value.exceptions[0], ConnectionRefusedError)

    loop.run_until_complete(main())


def test_unknown_host(fds_checked):
    loop = fds_checked

    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_connection(asyncio.Protocol, "no-such-host.invalid", 80)

    loop.run_until_complete(main())


def test_invalid_arguments(loop):
    async def main():
        with pytest.raises(TypeError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", "not-a-port-number-or-service")
        with pytest.raises(OSError):
            await loop.create_server(asyncio.Protocol, "256.1.1.1", 0)
        with pytest.raises((OverflowError, OSError)):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 70000)

    try:
        loop.run_until_complete(main())
    except socket.gaierror:
        pass  # some resolvers reject the service name before the port type check


def _rst_close(sock):
    # SO_LINGER 0: close() sends a TCP RST instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_peer_reset_mid_write(fds_checked):
    loop = fds_checked

    async def main():
        accepted = loop.create_future()

        class Hold(asyncio.Protocol):
            def connection_made(self, t):
                accepted.set_result(t)

        srv = await loop.create_server(Hold, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(lambda: make_recorder(loop), *srv.sockets[0].getsockname())
        server_tr = await accepted
        server_tr.pause_reading()
        chunk = b"y" * 65536
        for _ in range(1024):  # fill the socket buffers (as large as the host's sysctls allow)
            tr.write(chunk)
            if tr.get_write_buffer_size() > 0:  # until writes are queued
                break
        assert tr.get_write_buffer_size() > 0
        _rst_close(server_tr.get_extra_info("socket")._sock)  # the peer vanishes with a reset
        server_tr.abort()
        for _ in range(100):
            if pr.lost.done():
                break
            tr.write(chunk)
            await asyncio.sleep(0.01)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert pr.lost_count == 1
        tr.write(b"after")  # silently dropped
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_peer_reset_while_reading(fds_checked):
    loop = fds_checked

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        tr, pr = await loop.create_connection(lambda: make_recorder(loop), *lsock.getsockname())
        conn, _ = lsock.accept()
        conn.sendall(b"partial")
        _rst_close(conn)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, ConnectionResetError) or exc is None
        assert pr.lost_count == 1
        lsock.close()

    loop.run_until_complete(main())


def test_peer_vanishes_streams_api(fds_checked):
    loop = fds_checked

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        r, w = await asyncio.open_connection(*lsock.getsockname())
        conn, _ = lsock.accept()
        _rst_close(conn)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await r.readexactly(10)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(100):
                w.write(b"z" * 65536)
                await w.drain()
        w.close()
        lsock.close()

    loop.run_until_complete(main())


def test_server_closed_with_live_clients_clients_see_eof(fds_checked):
    loop = fds_checked

    async def main():
        srv_transports = []

        class Keep(asyncio.Protocol):
            def connection_made(self, t):
                srv_transports.append(t)

        srv = await loop.create_server(Keep, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        clients = [
            await loop.create_connection(lambda: make_recorder(loop), "127.0.0.1", port) for _ in range(5)
        ]
        await asyncio.sleep(0.01)
        srv.close()
        for t in srv_transports:
            t.close()
        await srv.wait_closed()
        for _tr, pr in clients:
            assert await asyncio.wait_for(pr.lost, 5) is None
            assert pr.lost_count == 1
            assert "eof" in pr.events

    loop.run_until_complete(main())


def test_close_twice_and_abort_after_close(fds_checked):
    loop = fds_checked

    async def main():
        class Echo(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t

        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(lambda: make_recorder(loop), *srv.sockets[0].getsockname())
        tr.close()
        tr.close()
        tr.abort()
        assert await pr.lost is None
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1
        srv.close()

    loop.run_until_complete(main())


def test_loop_closed_with_open_transport_does_not_crash():
    import ferroloop

    loop = ferroloop.new_event_loop()

    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname())
        return tr

    tr = loop.run_until_complete(main())
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        tr.close()  # scheduling connection_lost needs the loop
    import gc

    with pytest.warns(ResourceWarning):
        del tr
        gc.collect()
