"""The write path delivers everything (issue 11 finding 1): writelines() of more buffers
than one vectored send carries, and writes queued behind a backed-up large write, reach the
peer byte for byte, and write_eof() then takes effect — over TCP, a Unix socket and a pipe.

The peer runs on the same loop; a writer that stalls shows up as a timeout of the wait for
the peer's EOF, not as a hang."""

import asyncio
import hashlib
import os
import random

import pytest

SIZES = [65, 1000, 10_000]


def random_buffers(n, seed, max_size=3000):
    """n buffers of random sizes (some empty), as bytes, bytearray and memoryview."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        data = rnd.randbytes(rnd.randint(0, max_size))
        out.append((bytes, bytearray, memoryview)[i % 3](data))
    return out


def digest(buffers):
    h = hashlib.sha256()
    size = 0
    for b in buffers:
        h.update(b)
        size += len(b)
    return size, h.hexdigest()


class Sink(asyncio.Protocol):
    """Hashes what arrives; `done` gets (size, sha256) at EOF."""

    def __init__(self, loop):
        self.h = hashlib.sha256()
        self.size = 0
        self.done = loop.create_future()

    def data_received(self, data):
        self.h.update(data)
        self.size += len(data)

    def eof_received(self):
        if not self.done.done():
            self.done.set_result((self.size, self.h.hexdigest()))
        return False

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result((self.size, self.h.hexdigest()))


async def open_pair(loop, how, tmp_path):
    """(writer transport, sink protocol, cleanup coroutine function) over `how`."""
    if how == "pipe":
        rfd, wfd = os.pipe()
        sink = Sink(loop)
        rtr, _ = await loop.connect_read_pipe(lambda: sink, os.fdopen(rfd, "rb", 0))
        wtr, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))

        async def cleanup():
            wtr.close()
            rtr.close()

        return wtr, sink, cleanup
    sinks = []

    def factory():
        sinks.append(Sink(loop))
        return sinks[-1]

    if how == "unix":
        path = str(tmp_path / "w.sock")
        srv = await loop.create_unix_server(factory, path)
        wtr, _ = await loop.create_unix_connection(asyncio.Protocol, path)
    else:
        srv = await loop.create_server(factory, "127.0.0.1", 0)
        wtr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname()[:2])
    while not sinks:
        await asyncio.sleep(0)

    async def cleanup():
        wtr.close()
        srv.close()
        await srv.wait_closed()

    return wtr, sinks[0], cleanup


def write_eof(tr):
    if tr.can_write_eof():
        tr.write_eof()
    else:
        tr.close()


@pytest.fixture(params=["tcp", "unix", "pipe"])
def how(request):
    return request.param


@pytest.mark.parametrize("n", SIZES)
def test_writelines_many_buffers_all_delivered(loop, how, n, tmp_path):
    async def main():
        tr, sink, cleanup = await open_pair(loop, how, tmp_path)
        bufs = random_buffers(n, seed=n)
        tail = [b"after writelines", b"!" * 10]
        tr.writelines(bufs)
        for b in tail:
            tr.write(b)
        write_eof(tr)
        got = await asyncio.wait_for(sink.done, 30)
        assert got == digest(bufs + tail)
        await cleanup()

    loop.run_until_complete(main())


def test_writes_behind_a_backed_up_8_mib_write(loop, how, tmp_path):
    async def main():
        tr, sink, cleanup = await open_pair(loop, how, tmp_path)
        tr.set_write_buffer_limits(high=64 * 1024 * 1024)  # no pause_writing in the way
        big = random.Random(8).randbytes(8 * 1024 * 1024)
        small = random_buffers(1000, seed=1, max_size=500)
        tr.write(big)
        assert tr.get_write_buffer_size() > 0  # the kernel could not take 8 MiB at once
        for b in small:
            tr.write(b)
        tr.writelines(small[:100])
        write_eof(tr)
        got = await asyncio.wait_for(sink.done, 30)
        assert got == digest([big] + small + small[:100])
        assert tr.get_write_buffer_size() == 0
        await cleanup()

    loop.run_until_complete(main())


def test_writelines_behind_buffered_data_then_close(loop, how, tmp_path):
    """close() (not write_eof) after a long writelines: the flush finishes the close."""

    async def main():
        tr, sink, cleanup = await open_pair(loop, how, tmp_path)
        tr.set_write_buffer_limits(high=64 * 1024 * 1024)
        bufs = random_buffers(5000, seed=3)
        tr.write(b"x" * (4 * 1024 * 1024))
        tr.writelines(bufs)
        tr.close()
        got = await asyncio.wait_for(sink.done, 30)
        assert got == digest([b"x" * (4 * 1024 * 1024)] + bufs)
        await cleanup()

    loop.run_until_complete(main())


def test_writelines_of_empty_buffers_then_write_eof(loop, how, tmp_path):
    """Found by the differential tester: 3.12+'s asyncio (3.12.1, 3.13.0 here) keeps an
    empty memoryview buffered for ever after writelines([b""]), so write_eof() never
    takes effect. ferroloop delivers the EOF."""
    from netutil import asyncio_loses_eof_after_empty_writelines

    stock = type(loop).__module__.startswith("asyncio")
    if stock and how != "pipe" and asyncio_loses_eof_after_empty_writelines():
        pytest.xfail("this Python's asyncio loses write_eof after writelines of empty buffers")

    async def main():
        tr, sink, cleanup = await open_pair(loop, how, tmp_path)
        tr.writelines([b"", bytearray(), memoryview(b"")])
        write_eof(tr)
        assert await asyncio.wait_for(sink.done, 10) == digest([])
        await cleanup()

    loop.run_until_complete(main())


@pytest.mark.parametrize("end", ["write_eof", "close"])
def test_pipe_write_dropped_while_closing_still_flushes(loop, end):
    """A write pipe drops writes once closing (asyncio counts them in `_conn_lost`), but
    what it held before still reaches the reader and the pipe then closes: ferroloop used
    to take the dropped write for a lost connection and stop flushing, so the reader never
    saw EOF."""

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.lost = loop.create_future()

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        rfd, wfd = os.pipe()
        sink = Sink(loop)
        rtr, _ = await loop.connect_read_pipe(lambda: sink, os.fdopen(rfd, "rb", 0))
        tr, writer = await loop.connect_write_pipe(Writer, os.fdopen(wfd, "wb", 0))
        data = os.urandom(2 * 1024 * 1024)
        tr.write(data)
        assert tr.get_write_buffer_size() > 0  # more than the pipe holds: the rest waits
        getattr(tr, end)()
        tr.write(b"dropped")
        tr.writelines([b"also dropped"])
        assert await asyncio.wait_for(sink.done, 10) == digest([data])
        assert await asyncio.wait_for(writer.lost, 10) is None
        rtr.close()

    loop.run_until_complete(main())
