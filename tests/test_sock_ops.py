"""loop.sock_* on raw non-blocking sockets, and sendfile."""

import asyncio
import os
import socket

import pytest

from netutil import make_recorder


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_sock_recv_sendall(loop):
    async def main():
        a, b = pair()
        reader = asyncio.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        assert not reader.done()
        await loop.sock_sendall(b, b"hello")
        assert await reader == b"hello"
        big = os.urandom(4 * 1024 * 1024)
        sender = asyncio.create_task(loop.sock_sendall(b, big))
        got = bytearray()
        while len(got) < len(big):
            got += await loop.sock_recv(a, 65536)
        await sender
        assert got == big
        a.close(), b.close()

    loop.run_until_complete(main())


def test_sock_recv_into(loop):
    async def main():
        a, b = pair()
        buf = bytearray(10)
        task = asyncio.create_task(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        b.send(b"into")
        assert await task == 4
        assert buf[:4] == b"into"
        a.close(), b.close()

    loop.run_until_complete(main())


def test_sock_recv_cancelled_removes_reader(loop):
    async def main():
        a, b = pair()
        task = asyncio.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert loop.remove_reader(a) is False  # the watcher is gone
        a.close(), b.close()

    loop.run_until_complete(main())


def test_sock_accept_and_connect(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        accepting = asyncio.create_task(loop.sock_accept(lsock))
        await loop.sock_connect(client, lsock.getsockname())
        conn, addr = await accepting
        assert addr == client.getsockname()
        assert conn.gettimeout() == 0
        await loop.sock_sendall(client, b"x")
        assert await loop.sock_recv(conn, 1) == b"x"
        for s in (conn, client, lsock):
            s.close()

    loop.run_until_complete(main())


def test_sock_connect_refused(loop):
    async def main():
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        s = socket.socket()
        s.setblocking(False)
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(s, ("127.0.0.1", port))
        s.close()

    loop.run_until_complete(main())


def test_refused_connect_leaves_no_reference_cycle(loop, tmp_path):
    """asyncio breaks the cycle a failed connect makes (exception -> traceback -> frame
    -> future -> exception): once the caller lets go, nothing is left for the garbage
    collector, for sock_connect (TCP, and a Unix path nobody listens on) and
    create_connection alike."""
    import gc

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    dead = tmp_path / "nobody.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()  # the file stays, nobody listens: ECONNREFUSED at once

    async def attempts():
        for family, addr in ((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_UNIX, str(dead))):
            s = socket.socket(family)
            s.setblocking(False)
            try:
                await loop.sock_connect(s, addr)
            except ConnectionRefusedError:
                pass
            finally:
                s.close()
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        except ConnectionRefusedError:
            pass

    loop.run_until_complete(attempts())  # warm up (first-call caches)
    gc.collect()
    gc.disable()
    try:
        loop.run_until_complete(attempts())
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, (OSError, asyncio.Future))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_sock_connect_resolves_names(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, ("localhost", lsock.getsockname()[1]))
        s.close(), lsock.close()

    loop.run_until_complete(main())


def test_sock_udp_ops(loop):
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        assert await loop.sock_sendto(a, b"dgram", b.getsockname()) == 5
        data, addr = await loop.sock_recvfrom(b, 100)
        assert (data, addr) == (b"dgram", a.getsockname())
        await loop.sock_sendto(a, b"into", b.getsockname())
        buf = bytearray(100)
        n, addr = await loop.sock_recvfrom_into(b, buf)
        assert buf[:n] == b"into"
        a.close(), b.close()

    loop.run_until_complete(main())


def test_sock_ops_require_nonblocking_in_debug(loop):
    loop.set_debug(True)

    async def main():
        a, b = socket.socketpair()
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            await loop.sock_recv(a, 1)
        a.close(), b.close()

    loop.run_until_complete(main())


@pytest.mark.parametrize("offset, count", [(0, None), (1000, None), (10, 5000)])
def test_sock_sendfile(loop, tmp_path, offset, count):
    data = os.urandom(300_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    async def main():
        a, b = pair()
        with open(path, "rb") as f:

            async def drain():
                got = bytearray()
                want = len(data[offset : offset + count] if count else data[offset:])
                while len(got) < want:
                    got += await loop.sock_recv(b, 65536)
                return bytes(got)

            reader = asyncio.create_task(drain())
            sent = await loop.sock_sendfile(a, f, offset, count)
            got = await reader
            assert f.tell() == offset + sent
        expected = data[offset : offset + count] if count else data[offset:]
        assert sent == len(expected) and got == expected
        a.close(), b.close()

    loop.run_until_complete(main())


def test_sock_sendfile_argument_errors(loop, tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")

    async def main():
        a, b = pair()
        with open(path, "r") as f:
            with pytest.raises(ValueError, match="file should be opened in binary mode"):
                await loop.sock_sendfile(a, f)
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sock_sendfile(a, f, 0, 0)
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(a, f, -1)
        a.close(), b.close()

    loop.run_until_complete(main())


def test_transport_sendfile(loop, tmp_path):
    data = os.urandom(1_000_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    async def main():
        received = bytearray()
        done = loop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, d):
                received.extend(d)
                if len(received) >= len(data):
                    done.set_result(None)

        srv = await loop.create_server(Sink, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(lambda: make_recorder(loop), *srv.sockets[0].getsockname())
        tr.write(b"")  # nothing buffered
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f)
        await asyncio.wait_for(done, 10)
        assert sent == len(data) and bytes(received) == data
        tr.write(b"still usable")
        tr.close()
        srv.close()

    loop.run_until_complete(main())


def test_transport_sendfile_large_file_slow_reader(loop, tmp_path):
    """os.sendfile hits EAGAIN on the transport's own socket: wait for its writable edge."""
    size = 8 * 1024 * 1024
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(size))

    async def main():
        got = bytearray()
        done = loop.create_future()

        class Slow(asyncio.Protocol):
            def connection_made(self, tr):
                tr.pause_reading()
                loop.call_later(0.1, tr.resume_reading)

            def data_received(self, d):
                got.extend(d)
                if len(got) == size:
                    done.set_result(None)

        srv = await loop.create_server(Slow, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname())
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                tr.write(b"in the middle")
            sent = await task
        await asyncio.wait_for(done, 20)
        tr.close()
        srv.close()
        return sent, bytes(got)

    sent, got = loop.run_until_complete(main())
    assert sent == size and got == path.read_bytes()


def test_sendfile_makes_no_python_os_call(floop, tmp_path, monkeypatch):
    """sendfile(2) per chunk is native: no Python-level os.sendfile on the loop thread
    (blockbuster, run by aiohttp's and anyio's suites, refuses that outside asyncio's own
    frames), for loop.sendfile and sock_sendfile alike."""
    loop = floop
    data = os.urandom(300_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    calls = []
    real = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *a: calls.append(a) or real(*a))

    async def main():
        received = bytearray()
        done = loop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, d):
                received.extend(d)
                if len(received) >= 2 * len(data) and not done.done():
                    done.set_result(None)

        srv = await loop.create_server(Sink, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, _ = await loop.create_connection(asyncio.Protocol, *addr)
        with open(path, "rb") as f:
            assert await loop.sendfile(tr, f) == len(data)
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, addr)
        with open(path, "rb") as f:
            assert await loop.sock_sendfile(s, f, fallback=False) == len(data)
            assert f.tell() == len(data)
        await asyncio.wait_for(done, 10)
        tr.close(), s.close()
        srv.close()

    loop.run_until_complete(main())
    assert calls == []


def test_sock_sendfile_errors_as_asyncio_maps_them(loop, tmp_path):
    """A peer gone before the first byte: SendfileNotAvailableError (no fallback asked);
    gone midway: the OSError itself (EPIPE or ECONNRESET), the file position kept."""
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(8_000_000))

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.close()
        with open(path, "rb") as f:
            with pytest.raises(asyncio.SendfileNotAvailableError, match="os.sendfile call failed"):
                await loop.sock_sendfile(a, f, fallback=False)
        a.close()

        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        async def read_some_then_close():
            got = 0
            while got < 100_000:
                try:
                    got += len(await loop.sock_recv(b, 65536))
                except BlockingIOError:
                    await asyncio.sleep(0)
            b.close()

        reader = asyncio.ensure_future(read_some_then_close())
        with open(path, "rb") as f:
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                await loop.sock_sendfile(a, f, fallback=False)
            assert 0 < f.tell() < 8_000_000
        await reader
        a.close()

    loop.run_until_complete(main())


@pytest.mark.parametrize(
    "mode, offset, count, exc, message",
    [
        ("r", 0, None, ValueError, "file should be opened in binary mode"),
        ("rb", 0, 0, ValueError, "count must be a positive integer (got 0)"),
        ("rb", 0, -1, ValueError, "count must be a positive integer (got -1)"),
        ("rb", -1, None, ValueError, "offset must be a non-negative integer (got -1)"),
        ("rb", 0, 1.5, TypeError, "count must be a positive integer (got 1.5)"),
        ("rb", "0", None, TypeError, "offset must be a non-negative integer (got '0')"),
    ],
)
def test_transport_sendfile_argument_errors(loop, tmp_path, mode, offset, count, exc, message):
    """Issue 11 finding 4: loop.sendfile checks its arguments as asyncio does, before
    anything is sent, and the transport stays usable."""
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")

    async def main():
        received = bytearray()

        class Sink(asyncio.Protocol):
            def data_received(self, d):
                received.extend(d)

        srv = await loop.create_server(Sink, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(lambda: make_recorder(loop), *srv.sockets[0].getsockname())
        with open(path, mode) as f:
            with pytest.raises(exc) as info:
                await loop.sendfile(tr, f, offset, count)
            assert str(info.value) == message
            assert f.tell() == 0
        assert tr.is_reading()
        tr.write(b"after")
        tr.write_eof()
        while bytes(received) != b"after":
            await asyncio.sleep(0.001)
        tr.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())
