"""The native TLS layer (src/tls/, python/ferroloop/_tls.py): data integrity under random
chunking and pauses, timeouts, vanishing peers, verification failures, SNI, ALPN,
start_tls, back-pressure, churn, and the EOF-while-paused case asyncio gets wrong.
Each test runs on ferroloop and on stock asyncio (the control) unless it says why not."""

import asyncio
import gc
import hashlib
import os
import random
import socket
import ssl
import sys
import tempfile
import threading

import pytest
import trustme  # the compat extra (./dev test installs it)

from ferroloop import _tls

MB = 1024 * 1024


@pytest.fixture(scope="module")
def certs():
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "example.test")

    class Certs:
        def server(self):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            return ctx

        def client(self):
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            ca.configure_trust(ctx)
            return ctx

    return Certs()


def run(loop, coro, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def is_native(loop):
    return type(loop).__module__.startswith("ferroloop")


def blob(seed, n):
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


class Sink(asyncio.Protocol):
    """Hashes what it receives, pausing reading at random moments for random times."""

    def __init__(self, loop, expect, rng):
        self.loop, self.expect, self.rng = loop, expect, rng
        self.h = hashlib.sha256()
        self.got = 0
        self.done = loop.create_future()
        self.lost = loop.create_future()
        self.made = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data):
        self.h.update(data)
        self.got += len(data)
        if self.got >= self.expect and not self.done.done():
            self.done.set_result(self.h.hexdigest())
        elif self.rng.random() < 0.05:
            self.transport.pause_reading()
            assert not self.transport.is_reading()
            self.loop.call_later(self.rng.random() * 0.005, self.transport.resume_reading)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class BufferedSink(Sink, asyncio.BufferedProtocol):
    def get_buffer(self, hint):
        # a memoryview: asyncio's SSLProtocol slices what get_buffer returns, and a
        # bytearray's slice is a copy (its reads past the first would be lost)
        self.buf = memoryview(bytearray(self.rng.choice((1, 7, 512, 16384, 100000))))
        return self.buf

    def buffer_updated(self, n):
        self.data_received(bytes(self.buf[:n]))


class Source(asyncio.Protocol):
    """Writes `data` in random-sized chunks, honouring pause_writing."""

    def __init__(self, loop, data, rng):
        self.loop, self.data, self.rng = loop, memoryview(data), rng
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self):
        self.can_write.clear()

    def resume_writing(self):
        self.can_write.set()

    async def send(self, transport):
        off = 0
        while off < len(self.data):
            await self.can_write.wait()
            n = self.rng.choice((1, 100, 1000, 16384, 65536, 300000))
            transport.write(self.data[off : off + n])
            off += n
            if self.rng.random() < 0.1:
                await asyncio.sleep(0)


class Duplex(Sink):
    """Both: the sending half and the hashing half of one connection."""

    def __init__(self, loop, expect, rng, data):
        super().__init__(loop, expect, rng)
        self.src = Source(loop, data, rng)

    def pause_writing(self):
        self.src.pause_writing()

    def resume_writing(self):
        self.src.resume_writing()


class BufferedDuplex(Duplex, asyncio.BufferedProtocol):
    get_buffer = BufferedSink.get_buffer
    buffer_updated = BufferedSink.buffer_updated


@pytest.mark.parametrize("buffered", [False, True], ids=["protocol", "buffered"])
def test_100mb_both_ways_random_chunks_and_pauses(loop, certs, buffered):
    size = 100 * MB if not buffered else 20 * MB
    up, down = blob(b"up", size), blob(b"down", size)
    rng = random.Random(1234)
    cls = BufferedDuplex if buffered else Duplex

    async def main():
        server_side = []

        def factory():
            p = cls(loop, size, rng, down)
            server_side.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        t, client = await loop.create_connection(
            lambda: cls(loop, size, rng, up),
            "127.0.0.1",
            port,
            ssl=certs.client(),
            server_hostname="localhost",
        )
        while not server_side:
            await asyncio.sleep(0.01)
        srv = server_side[0]
        await srv.made
        await asyncio.gather(client.src.send(t), srv.src.send(srv.transport))
        got_down, got_up = await asyncio.gather(client.done, srv.done)
        assert got_down == hashlib.sha256(down).hexdigest()
        assert got_up == hashlib.sha256(up).hexdigest()
        t.close()
        assert await client.lost is None
        await srv.lost
        server.close()
        await server.wait_closed()

    run(loop, main(), 240)


def test_transport_surface(loop, certs):
    async def main():
        seen = {}

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                seen["server"] = transport

        server = await loop.create_server(P, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        ctx = certs.client()
        lost = loop.create_future()

        class Client(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        t, p = await loop.create_connection(Client, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert isinstance(t, asyncio.Transport)
        assert isinstance(t.get_extra_info("ssl_object"), ssl.SSLObject)
        assert t.get_extra_info("sslcontext") is ctx
        assert t.get_extra_info("peercert")["subjectAltName"]
        assert t.get_extra_info("cipher")[0]
        assert t.get_extra_info("compression") is None
        assert t.get_extra_info("socket") is not None
        assert t.get_extra_info("peername") == ("127.0.0.1", port)
        assert t.get_extra_info("sockname")[0] == "127.0.0.1"
        assert t.get_extra_info("nonexistent", 42) == 42
        assert t.get_protocol() is p
        assert t.is_reading()
        t.pause_reading()
        assert not t.is_reading()
        t.resume_reading()
        assert t.can_write_eof() is False
        with pytest.raises(NotImplementedError):
            t.write_eof()
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            t.write("text")
        t.set_write_buffer_limits(high=1000)
        assert t.get_write_buffer_limits() == (250, 1000)
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            t.set_write_buffer_limits(1, 2)
        assert t.get_write_buffer_size() == 0
        assert not t.is_closing()
        t.close()
        assert t.is_closing()
        if is_native(loop):
            assert type(t) is _tls.TlsTransport
        await lost  # the close has run its course (close_notify sent) before the server goes
        seen["server"].close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_handshake_timeout(loop, certs):
    async def main():
        # a TCP server that accepts and never speaks TLS
        held = []
        server = await loop.create_server(lambda: _Hold(held), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(
            ConnectionAbortedError,
            match=r"SSL handshake is taking longer than 0.2 seconds: aborting the connection",
        ):
            await loop.create_connection(
                asyncio.Protocol,
                "127.0.0.1",
                port,
                ssl=certs.client(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        for t in held:
            t.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


class _Hold(asyncio.Protocol):
    def __init__(self, held):
        self.held = held

    def connection_made(self, transport):
        self.held.append(transport)


def _tls_peer_thread(certs, action):
    """A blocking TLS server in a thread: accepts one connection and runs action(conn)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve():
        try:
            conn, _ = lsock.accept()
            with conn:
                action(conn)
        finally:
            lsock.close()
            done.set()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return lsock.getsockname()[1], th, done


def test_shutdown_timeout(loop, certs):
    release = threading.Event()

    def action(conn):
        tls = certs.server().wrap_socket(conn, server_side=True)
        tls.recv(1)  # the client's byte; then never answer close_notify
        release.wait(30)
        tls.close()  # wrap_socket took over conn's fd: this closes it (no close_notify is sent)

    port, th, _ = _tls_peer_thread(certs, action)

    async def main():
        lost = loop.create_future()

        class P(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        t, _ = await loop.create_connection(
            P, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost", ssl_shutdown_timeout=0.3
        )
        t.write(b"x")
        t.close()
        exc = await asyncio.wait_for(lost, 10)
        assert isinstance(exc, asyncio.TimeoutError) and str(exc) == "SSL shutdown timed out"

    try:
        run(loop, main())
    finally:
        release.set()
        th.join(10)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_peer_vanishes_mid_handshake(loop, certs, how):
    def action(conn):
        conn.recv(100)  # part of the ClientHello
        if how == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    port, th, _ = _tls_peer_thread(certs, action)

    async def main():
        with pytest.raises(ConnectionResetError):
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
            )

    run(loop, main())
    th.join(10)


def test_peer_vanishes_mid_record(loop, certs):
    def action(conn):
        obj, out = _bio_handshake(conn, certs.server())
        obj.write(b"whole record")
        conn.sendall(out.read())
        obj.write(b"y" * 5000)
        record = out.read()
        conn.sendall(record[: len(record) // 2])  # half a record, then gone

    port, th, _ = _tls_peer_thread(certs, action)

    async def main():
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        got = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
        assert got == b"whole record"  # nothing of the cut record reaches the app
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    run(loop, main())
    th.join(10)


def test_certificate_verification_failure(loop, certs):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        untrusting = ssl.create_default_context()  # the system CAs, not ours
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", port, ssl=untrusting, server_hostname="localhost"
            )
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.open_connection("127.0.0.1", port, ssl=certs.client(), server_hostname="wrong.test")
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_sni_callback_and_alpn(loop, certs):
    async def main():
        names = []
        sctx = certs.server()
        sctx.sni_callback = lambda sslobj, name, ctx: names.append(name)
        sctx.set_alpn_protocols(["h2", "http/1.1"])
        server = await asyncio.start_server(_echo_once, "127.0.0.1", 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        cctx = certs.client()
        cctx.set_alpn_protocols(["http/1.1"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=cctx, server_hostname="example.test"
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        assert writer.get_extra_info("ssl_object").server_hostname == "example.test"
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
        assert names == ["example.test"]
        server.close()
        await server.wait_closed()

    run(loop, main())


async def _echo_once(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    await reader.read()
    writer.close()


@pytest.mark.parametrize("buffered", [False, True], ids=["protocol", "buffered"])
def test_start_tls_after_plaintext_both_sides(loop, certs, buffered):
    async def main():
        server_done = loop.create_future()

        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(certs.server())
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
            server_done.set_result(None)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        got = bytearray()
        lost = loop.create_future()

        class Plain(asyncio.Protocol):
            def __init__(self):
                self.go = loop.create_future()

            def data_received(self, data):
                assert data == b"GO\n"
                self.go.set_result(None)

        class Upgraded(asyncio.BufferedProtocol if buffered else asyncio.Protocol):
            def get_buffer(self, hint):
                self.buf = memoryview(bytearray(3))
                return self.buf

            def buffer_updated(self, n):
                got.extend(self.buf[:n])

            def data_received(self, data):
                got.extend(data)

            def eof_received(self):
                return None

            def connection_lost(self, exc):
                lost.set_result(exc)

        t, plain = await loop.create_connection(Plain, "127.0.0.1", port)
        t.write(b"STARTTLS\n")
        await plain.go
        up = Upgraded()
        tt = await loop.start_tls(t, up, certs.client(), server_hostname="localhost")
        assert tt.get_protocol() is up
        assert isinstance(tt.get_extra_info("ssl_object"), ssl.SSLObject)
        tt.write(b"hello over tls\n")
        while b"\n" not in got:
            await asyncio.sleep(0.01)
        assert bytes(got) == b"HELLO OVER TLS\n"
        tt.close()
        assert await lost is None
        await server_done
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_back_pressure_bounded_memory(loop, certs):
    """A fast writer that honours pause_writing, a reader that stops reading: the data
    waiting anywhere on the writer's side stays bounded by the limits plus one write."""
    chunk = 64 * 1024

    async def main():
        server_side = []

        class Stalled(asyncio.Protocol):
            def connection_made(self, transport):
                transport.pause_reading()
                self.transport = transport
                server_side.append(self)

        server = await loop.create_server(Stalled, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        paused = asyncio.Event()

        class Writer(asyncio.Protocol):
            def pause_writing(self):
                paused.set()

            def resume_writing(self):
                paused.clear()

        t, _ = await loop.create_connection(
            Writer, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        raw = t._ssl_protocol._transport
        high = t.get_write_buffer_limits()[1]
        peak = 0
        for _ in range(2000):
            if paused.is_set():
                break
            t.write(b"z" * chunk)
            peak = max(peak, t.get_write_buffer_size() + raw.get_write_buffer_size())
            await asyncio.sleep(0)
        assert paused.is_set(), "pause_writing never came"
        raw_high = raw.get_write_buffer_limits()[1]
        assert peak <= high + raw_high + 2 * chunk, (peak, high, raw_high)
        t.abort()
        server_side[0].transport.abort()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_pause_writing_that_raises_goes_to_the_exception_handler(loop, certs):
    """asyncio's report of a failing pause_writing on a TLS transport: the message, the
    exception, the app transport and the TLS protocol; the connection keeps working."""
    chunk = 64 * 1024

    async def main():
        contexts = []
        accepted = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

        class Stalled(asyncio.Protocol):
            def connection_made(self, transport):
                transport.pause_reading()
                accepted.append(transport)

        server = await loop.create_server(Stalled, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        boom = RuntimeError("pause_writing failed on purpose")

        class Writer(asyncio.Protocol):
            def pause_writing(self):
                raise boom

        t, _ = await loop.create_connection(
            Writer, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        try:
            for _ in range(2000):
                if contexts:
                    break
                t.write(b"z" * chunk)
                await asyncio.sleep(0)
            assert contexts, "pause_writing was never called"
            ctx = contexts[0]
            assert ctx["message"] == "protocol.pause_writing() failed"
            assert ctx["exception"] is boom
            assert ctx["transport"] is t
            assert ctx["protocol"] is t._ssl_protocol
            assert not t.is_closing()
        finally:
            t.abort()
            for transport in accepted:
                transport.abort()
            server.close()
            await server.wait_closed()
            loop.set_exception_handler(None)

    run(loop, main())


def _rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_1000_connections_fds_and_rss_flat(floop, certs):
    loop = floop
    sctx, cctx = certs.server(), certs.client()

    async def one_round(port, n):
        for _ in range(n // 20):
            conns = await asyncio.gather(
                *[
                    asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="localhost")
                    for _ in range(20)
                ]
            )
            for _reader, writer in conns:
                writer.write(b"hi\n")
            for reader, writer in conns:
                assert await reader.readline() == b"hi\n"
                writer.close()
            for _reader, writer in conns:
                await writer.wait_closed()

    def nfds():
        return len(os.listdir("/proc/self/fd"))

    async def server_sides_closed(limit):
        # the server's ends close a few iterations after the clients' (their close_notify
        # has to arrive first): wait for that, bounded, instead of for a fixed time
        deadline = loop.time() + 10
        while nfds() > limit and loop.time() < deadline:
            await asyncio.sleep(0.01)
        gc.collect()

    async def main():
        server = await asyncio.start_server(_echo_once, "127.0.0.1", 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        start = nfds()
        await one_round(port, 200)  # warm-up: caches, allocator pools
        await server_sides_closed(start)
        fds0, rss0 = nfds(), _rss_kib()
        await one_round(port, 1000)
        await server_sides_closed(fds0)
        fds1, rss1 = nfds(), _rss_kib()
        assert fds1 <= fds0, (fds0, fds1)
        assert rss1 - rss0 < 8 * 1024, f"RSS grew {rss1 - rss0} KiB over 1000 TLS connections"
        server.close()
        await server.wait_closed()

    run(loop, main(), 180)


def _bio_handshake(conn, ctx):
    """Server side of a handshake over a blocking socket, through MemoryBIOs (so the test
    controls every byte that goes out afterwards)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    obj._feed = inc.write
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            conn.sendall(out.read())
            inc.write(conn.recv(65536))
    conn.sendall(out.read())
    return obj, out


def _bio_read_until(conn, obj, want):
    got = b""
    while not got.endswith(want):
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            obj._feed(conn.recv(65536))
    return got


def _sender_then_eof(certs, data):
    """A peer that sends data, its close_notify and a FIN, then waits for the client to go."""

    def action(conn):
        obj, out = _bio_handshake(conn, certs.server())
        _bio_read_until(conn, obj, b"go")
        obj.write(data)
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        conn.sendall(out.read())
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(20)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    return _tls_peer_thread(certs, action)


async def _paused_client(loop, certs, port):
    class Paused(asyncio.Protocol):
        def __init__(self):
            self.got = bytearray()
            self.eof = False
            self.lost = loop.create_future()

        def connection_made(self, transport):
            transport.pause_reading()

        def data_received(self, d):
            self.got.extend(d)

        def eof_received(self):
            self.eof = True

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    t, p = await loop.create_connection(
        Paused, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
    )
    t.write(b"go")  # (also flushes the handshake's last flight on asyncio, see below)
    # wait until the peer's EOF reached the TLS layer (its state moves on from WRAPPED)
    for _ in range(1000):
        if str(t._ssl_protocol._state).endswith("FLUSHING"):
            break
        await asyncio.sleep(0.01)
    assert str(t._ssl_protocol._state).endswith("FLUSHING")
    assert not p.got
    return t, p


def test_eof_while_paused_then_resume(loop, certs):
    data = blob(b"paused", 100 * 1024)
    port, th, _ = _sender_then_eof(certs, data)

    async def main():
        t, p = await _paused_client(loop, certs, port)
        t.resume_reading()
        assert await asyncio.wait_for(p.lost, 10) is None
        assert bytes(p.got) == data and p.eof

    run(loop, main())
    th.join(10)


def test_eof_while_paused_then_close_finishes(floop, certs):
    """asyncio's SSLProtocol never finishes this connection (close() after an EOF that
    came while reading was paused does nothing): ferroloop does. Not run on asyncio."""
    loop = floop
    port, th, _ = _sender_then_eof(certs, b"x" * 1000)

    async def main():
        t, p = await _paused_client(loop, certs, port)
        t.close()
        assert await asyncio.wait_for(p.lost, 10) is None

    run(loop, main())
    th.join(10)


def test_paused_in_connection_made_does_not_stall_the_handshake(floop, certs):
    """asyncio's SSLProtocol leaves the handshake's last flight (a TLS 1.3 client's
    Finished) in the outgoing BIO when the app pauses reading in connection_made, so the
    server's handshake never completes. ferroloop sends it. Not run on asyncio."""
    loop = floop
    done = threading.Event()

    def action(conn):
        _bio_handshake(conn, certs.server())
        done.set()

    port, th, _ = _tls_peer_thread(certs, action)

    class Paused(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()

    async def main():
        t, _ = await loop.create_connection(
            Paused, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        for _ in range(1000):
            if done.is_set():
                break
            await asyncio.sleep(0.01)
        assert done.is_set(), "the server's handshake did not complete"
        t.abort()

    run(loop, main())
    th.join(10)


def test_sendfile_over_tls_falls_back(loop, certs):
    payload = blob(b"file", 3 * MB + 17)

    async def main():
        got = loop.create_future()

        async def handle(reader, writer):
            got.set_result(await reader.read())
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        with tempfile.TemporaryFile() as f:
            f.write(payload)
            f.flush()
            f.seek(0)
            with pytest.raises(RuntimeError, match="fallback is disabled"):
                await loop.sendfile(writer.transport, f, fallback=False)
            sent = await loop.sendfile(writer.transport, f)
        assert sent == len(payload)
        writer.close()
        await writer.wait_closed()
        assert await got == payload
        server.close()
        await server.wait_closed()

    run(loop, main())


class _WrapBioContext(ssl.SSLContext):
    calls = 0

    def wrap_bio(self, *args, **kwargs):
        type(self).calls += 1
        return super().wrap_bio(*args, **kwargs)


def test_context_overriding_wrap_bio_falls_back_to_asyncio(floop, certs):
    loop = floop
    ctx = _WrapBioContext(ssl.PROTOCOL_TLS_CLIENT)
    assert not _tls.native_serves(ctx)
    assert _tls.native_serves(certs.client())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def main():
        server = await asyncio.start_server(_echo_once, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        from asyncio import sslproto

        assert isinstance(writer.transport, sslproto._SSLProtocolTransport)
        writer.write(b"ok\n")
        assert await reader.readline() == b"ok\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert _WrapBioContext.calls == 1


def test_handshake_timeout_argument_checks(loop, certs):
    async def main():
        with pytest.raises(ValueError, match="ssl_handshake_timeout should be a positive number, got 0"):
            await loop.create_connection(
                asyncio.Protocol,
                "127.0.0.1",
                1,
                ssl=certs.client(),
                server_hostname="localhost",
                ssl_handshake_timeout=0,
            )

    # the connect fails first on asyncio (nothing listens on port 1); both must raise *something* clear
    try:
        run(loop, main())
    except (ConnectionRefusedError, OSError):
        pass


@pytest.mark.skipif(sys.platform != "linux", reason="Unix sockets with TLS: Linux CI only")
def test_unix_tls(loop, certs):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tls.sock")
            server = await asyncio.start_unix_server(_echo_once, path, ssl=certs.server())
            reader, writer = await asyncio.open_unix_connection(
                path, ssl=certs.client(), server_hostname="localhost"
            )
            writer.write(b"unix\n")
            assert await reader.readline() == b"unix\n"
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    run(loop, main())


def test_connect_accepted_socket_tls(loop, certs):
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        connecting = asyncio.ensure_future(
            asyncio.open_connection("127.0.0.1", port, ssl=certs.client(), server_hostname="localhost")
        )
        conn, _ = await loop.sock_accept(lsock)
        lsock.close()
        got = loop.create_future()

        class P(asyncio.Protocol):
            def data_received(self, data):
                self.transport.write(data)

            def connection_made(self, transport):
                self.transport = transport

            def connection_lost(self, exc):
                got.set_result(exc)

        t, _ = await loop.connect_accepted_socket(P, conn, ssl=certs.server())
        reader, writer = await connecting
        writer.write(b"acc\n")
        assert await reader.readline() == b"acc\n"
        writer.close()
        await writer.wait_closed()
        assert await got is None

    run(loop, main())


def test_buffered_protocol_with_bytearray_buffer_gets_every_byte(floop, certs):
    """asyncio's SSLProtocol slices what get_buffer returns; a bytearray's slice is a copy,
    so asyncio loses what it reads after the first record into one buffer. ferroloop
    reads into the buffer itself. Not run on asyncio."""
    loop = floop
    data = blob(b"bytearray", 300 * 1024)

    async def main():
        class Sender(asyncio.Protocol):
            def connection_made(self, transport):
                transport.write(data)

        server = await loop.create_server(Sender, "127.0.0.1", 0, ssl=certs.server())
        port = server.sockets[0].getsockname()[1]
        got = bytearray()
        enough = loop.create_future()

        class Receiver(asyncio.BufferedProtocol):
            def get_buffer(self, hint):
                self.buf = bytearray(40000)  # more than one record fits
                return self.buf

            def buffer_updated(self, n):
                got.extend(self.buf[:n])
                if len(got) >= len(data) and not enough.done():
                    enough.set_result(None)

        t, _ = await loop.create_connection(
            Receiver, "127.0.0.1", port, ssl=certs.client(), server_hostname="localhost"
        )
        await enough
        assert bytes(got) == data
        t.close()
        server.close()
        await server.wait_closed()

    run(loop, main())
