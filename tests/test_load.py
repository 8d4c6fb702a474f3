"""The network under load: integrity of 100 MB through an echo server, 5,000 idle
connections, back-pressure, and a soak of connect/close cycles (fds and RSS flat).
All bounded in count and time; loopback and Unix sockets only."""

import asyncio
import functools
import hashlib
import random
import subprocess
import sys
import textwrap
import time

import pytest

import ferroloop
from netutil import open_fds, rss_kib

TOTAL_BYTES = 100 * 1024 * 1024
CLIENTS = 200
PER_CLIENT = TOTAL_BYTES // CLIENTS
MAX_CHUNK = 64 * 1024


class FlowEcho(asyncio.Protocol):
    """Echo that honours back-pressure: stops reading while its writes are paused."""

    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)

    def pause_writing(self):
        self.t.pause_reading()

    def resume_writing(self):
        self.t.resume_reading()


class Client(asyncio.Protocol):
    def __init__(self, loop, seed):
        self.loop = loop
        self.rng = random.Random(seed)
        self.remaining = PER_CLIENT
        self.sent = hashlib.sha256()
        self.recv = hashlib.sha256()
        self.received = 0
        self.can_write = True
        self.eof_sent = False
        self.done = loop.create_future()

    def connection_made(self, t):
        self.t = t
        self.pump()

    def pump(self):
        while self.remaining and self.can_write:
            n = min(self.remaining, self.rng.randint(1, MAX_CHUNK))
            chunk = self.rng.randbytes(n)
            self.sent.update(chunk)
            self.remaining -= n
            self.t.write(chunk)
        if not self.remaining and self.can_write and not self.eof_sent:
            self.t.write_eof()
            self.eof_sent = True

    def pause_writing(self):
        self.can_write = False

    def resume_writing(self):
        self.can_write = True
        self.pump()

    def data_received(self, data):
        self.recv.update(data)
        self.received += len(data)
        if self.rng.random() < 0.02:  # a random pause of reading
            self.t.pause_reading()
            self.loop.call_later(self.rng.uniform(0.001, 0.02), self.t.resume_reading)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


async def protocol_run(loop, path):
    srv = await (
        loop.create_unix_server(FlowEcho, path) if path else loop.create_server(FlowEcho, "127.0.0.1", 0)
    )
    addr = path or srv.sockets[0].getsockname()
    clients = []
    for i in range(CLIENTS):
        factory = functools.partial(Client, loop, i)
        _, c = await (
            loop.create_unix_connection(factory, addr) if path else loop.create_connection(factory, *addr)
        )
        clients.append(c)
    async with asyncio.timeout(240):
        excs = await asyncio.gather(*(c.done for c in clients))
    srv.close()
    await srv.wait_closed()
    return excs, clients


async def streams_run(loop, path):
    async def handle(reader, writer):
        rng = random.Random(id(writer))
        while data := await reader.read(rng.randint(1, MAX_CHUNK)):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    srv = await (
        asyncio.start_unix_server(handle, path) if path else asyncio.start_server(handle, "127.0.0.1", 0)
    )
    addr = path or srv.sockets[0].getsockname()

    async def client(seed):
        rng = random.Random(seed)
        r, w = await (asyncio.open_unix_connection(addr) if path else asyncio.open_connection(*addr))
        sent, recv = hashlib.sha256(), hashlib.sha256()

        async def writer():
            remaining = PER_CLIENT
            while remaining:
                n = min(remaining, rng.randint(1, MAX_CHUNK))
                chunk = rng.randbytes(n)
                sent.update(chunk)
                remaining -= n
                w.write(chunk)
                await w.drain()
            w.write_eof()

        async def reader():
            got = 0
            while data := await r.read(rng.randint(1, MAX_CHUNK)):
                recv.update(data)
                got += len(data)
                if rng.random() < 0.02:
                    await asyncio.sleep(rng.uniform(0.001, 0.02))
            return got

        _, got = await asyncio.gather(writer(), reader())
        w.close()
        await w.wait_closed()
        return sent.hexdigest(), recv.hexdigest(), got

    async with asyncio.timeout(240):
        results = await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    srv.close()
    await srv.wait_closed()
    return results


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_integrity_protocol_api(transport, tmp_path):
    loop = ferroloop.new_event_loop()
    try:
        path = str(tmp_path / "echo.sock") if transport == "unix" else None
        excs, clients = loop.run_until_complete(protocol_run(loop, path))
    finally:
        loop.close()
    assert all(e is None for e in excs)
    assert sum(c.received for c in clients) == TOTAL_BYTES
    for c in clients:
        assert c.received == PER_CLIENT
        assert c.recv.hexdigest() == c.sent.hexdigest()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_integrity_streams_api(transport, tmp_path):
    loop = ferroloop.new_event_loop()
    try:
        path = str(tmp_path / "echo.sock") if transport == "unix" else None
        results = loop.run_until_complete(streams_run(loop, path))
    finally:
        loop.close()
    assert sum(got for _, _, got in results) == TOTAL_BYTES
    for sent, recv, got in results:
        assert got == PER_CLIENT and sent == recv


IDLE_CLIENTS = textwrap.dedent("""
    import socket, sys, time
    port, n = int(sys.argv[1]), int(sys.argv[2])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    print("connected", len(socks), flush=True)
    sys.stdin.readline()  # hold them until told
""")


def test_five_thousand_idle_connections_and_a_prompt_new_client():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 6000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 12000), hard))
    loop = ferroloop.new_event_loop()
    accepted = []

    class Echo(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            accepted.append(t)

        def data_received(self, data):
            self.t.write(data)

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        port = srv.sockets[0].getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-c", IDLE_CLIENTS, str(port), "5000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 120)
            assert line.strip() == b"connected 5000"
            async with asyncio.timeout(60):
                while len(accepted) < 5000:
                    await asyncio.sleep(0.01)
            t0 = time.monotonic()
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"hello")
            assert await r.readexactly(5) == b"hello"
            latency = time.monotonic() - t0
            w.close()
            return latency
        finally:
            proc.stdin.close()
            await loop.run_in_executor(None, proc.wait)
            for t in accepted:
                t.abort()
            srv.close()
            await asyncio.sleep(0.05)

    try:
        latency = loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(accepted) >= 5001
    assert latency < 0.5, f"a new client waited {latency:.3f}s beside 5,000 idle ones"


def test_backpressure_bounds_memory_and_loses_nothing():
    """A client that stops reading: the server's transport calls pause_writing at the
    high-water mark, the producer stops, memory stays bounded; when the client reads
    again everything arrives."""
    loop = ferroloop.new_event_loop()
    total = 64 * 1024 * 1024
    chunk = b"0123456789abcdef" * 4096  # 64 KiB
    stats = {"pauses": 0, "max_buffer": 0}

    class Producer(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.sent = 0
            self.paused = False
            self.produce()

        def produce(self):
            while not self.paused and self.sent < total:
                self.t.write(chunk)
                self.sent += len(chunk)
                stats["max_buffer"] = max(stats["max_buffer"], self.t.get_write_buffer_size())
            if self.sent >= total:
                self.t.close()

        def pause_writing(self):
            stats["pauses"] += 1
            self.paused = True

        def resume_writing(self):
            self.paused = False
            self.produce()

    async def main():
        srv = await loop.create_server(Producer, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        w.transport.pause_reading()  # the client stops reading
        await asyncio.sleep(0.3)
        assert stats["pauses"] >= 1
        # bounded: the buffer holds at most the high-water mark plus one chunk
        assert stats["max_buffer"] <= 64 * 1024 + len(chunk)
        w.transport.resume_reading()
        received = 0
        digest = hashlib.sha256()
        while data := await r.read(1 << 20):
            received += len(data)
            digest.update(data)
        w.close()
        srv.close()
        return received, digest.hexdigest()

    try:
        received, digest = loop.run_until_complete(main())
    finally:
        loop.close()
    assert received == total
    assert digest == hashlib.sha256(chunk * (total // len(chunk))).hexdigest()


def test_soak_500_cycles_fds_and_rss_flat():
    loop = ferroloop.new_event_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            self.t.write(data)

    async def cycle():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(50)))
        for _, w in conns:
            w.write(b"x" * 100)
        for r, _ in conns:
            await r.readexactly(100)
        for _, w in conns:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _, w in conns))
        srv.close()
        await srv.wait_closed()

    async def main():
        marks = {}
        for i in range(1, 501):
            await cycle()
            if i in (50, 500):
                await asyncio.sleep(0.01)
                marks[i] = (open_fds(), rss_kib())
        return marks

    try:
        marks = loop.run_until_complete(main())
    finally:
        loop.close()
    (fds50, rss50), (fds500, rss500) = marks[50], marks[500]
    assert fds500 <= fds50
    assert rss500 - rss50 < 4 * 1024, f"RSS grew from {rss50} KiB to {rss500} KiB"
