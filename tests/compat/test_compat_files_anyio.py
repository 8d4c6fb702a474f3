"""aiofiles reading and writing a file (through the loop's executor), and anyio's asyncio
backend: task groups, cancel scopes, memory streams, TCP listener/connect, threads,
synchronisation, run both by anyio.run(loop_factory=...) and inside a running loop."""

import asyncio
import hashlib
import os
import threading

import aiofiles
import aiofiles.os
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from .compatlib import EXPECTED_TYPE, FACTORIES, open_fds

MB = 1024 * 1024


def test_aiofiles_write_read(arun, tmp_path):
    path = tmp_path / "data.bin"
    text_path = tmp_path / "lines.txt"

    async def main():
        h = hashlib.sha256()
        async with aiofiles.open(path, "wb") as f:
            for i in range(80):  # 5 MiB in 64 KiB blocks
                block = hashlib.sha256(str(i).encode()).digest() * 2048
                h.update(block)
                assert await f.write(block) == len(block)
        st = await aiofiles.os.stat(path)
        assert st.st_size == 80 * 64 * 1024

        r = hashlib.sha256()
        n = 0
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(100_000):
                r.update(chunk)
                n += len(chunk)
            await f.seek(64 * 1024 * 3)
            assert await f.read(32) == hashlib.sha256(b"3").digest()
        assert n == st.st_size and r.hexdigest() == h.hexdigest()

        async with aiofiles.open(text_path, "w", encoding="utf-8") as f:
            await f.writelines(f"línea {i}\n" for i in range(2000))
        async with aiofiles.open(text_path, encoding="utf-8") as f:
            lines = [line async for line in f]
        assert lines == [f"línea {i}\n" for i in range(2000)]

        # concurrent files at once
        async def roundtrip(i):
            p = tmp_path / f"f{i}.txt"
            async with aiofiles.open(p, "w") as f:
                await f.write(str(i) * 1000)
            async with aiofiles.open(p) as f:
                return await f.read()

        got = await asyncio.gather(*(roundtrip(i) for i in range(30)))
        assert got == [str(i) * 1000 for i in range(30)]
        await aiofiles.os.remove(text_path)
        assert not await aiofiles.os.path.exists(text_path)

    arun(main)


async def anyio_scenario():
    # task group: results and an error cancelling its siblings
    results = []

    async def worker(i, delay):
        await anyio.sleep(delay)
        results.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(worker, i, (10 - i) * 0.005)
    assert sorted(results) == list(range(10)) and results[0] == 9

    cancelled = []

    async def sleeper():
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def failing():
        await anyio.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(ExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            tg.start_soon(failing)
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert cancelled == [True]

    # cancel scopes with deadlines
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep(5)
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await anyio.sleep(5)

    # memory object streams: producer/consumer with back-pressure
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=5)
    total = 0

    async def producer():
        async with send:
            for i in range(1000):
                await send.send(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        async with receive:
            async for item in receive:
                total += item
    assert total == sum(range(1000))

    # TCP: an anyio listener and client over loopback
    async def handle(client):
        async with client:
            buffered = BufferedByteReceiveStream(client)
            size = int((await buffered.receive_until(b"\n", 100)).decode())
            data = await buffered.receive_exactly(size)
            await client.send(hashlib.sha256(data).hexdigest().encode())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        payload = os.urandom(2 * MB)
        for _ in range(3):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(f"{len(payload)}\n".encode() + payload)
                reply = b""
                while len(reply) < 64:
                    reply += await stream.receive()
                assert reply.decode() == hashlib.sha256(payload).hexdigest()
        tg.cancel_scope.cancel()

    # worker threads and calls back into the loop
    main_thread = threading.get_ident()

    def in_thread(x):
        assert threading.get_ident() != main_thread
        anyio.from_thread.run(anyio.sleep, 0)  # back into the loop from the thread
        return x * 2

    assert await anyio.to_thread.run_sync(in_thread, 21) == 42

    # synchronisation primitives
    lock, event, sem = anyio.Lock(), anyio.Event(), anyio.Semaphore(3)
    active = peak = 0

    async def limited():
        nonlocal active, peak
        async with sem:
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.01)
            active -= 1
        async with lock:
            pass

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(limited)

        async def set_event():
            event.set()

        tg.start_soon(set_event)
    assert peak == 3 and event.is_set()

    # anyio's file API on top of the loop's threads
    path = anyio.Path(os.environ.get("TMPDIR", "/tmp")) / f"ferroloop-anyio-{os.getpid()}.txt"
    await path.write_text("anyio ✓")
    assert await path.read_text() == "anyio ✓"
    await path.unlink()
    return "done"


def test_anyio_in_running_loop(arun):
    async def main():
        assert anyio.get_current_task()  # anyio sees the asyncio backend
        return await anyio_scenario()

    assert arun(main) == "done"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_anyio_run_with_loop_factory(name):
    """anyio's own runner, handed the loop factory through backend_options."""
    seen = []

    async def main():
        seen.append(type(asyncio.get_running_loop()))
        return await anyio_scenario()

    before = open_fds()
    assert anyio.run(main, backend="asyncio", backend_options={"loop_factory": FACTORIES[name]}) == "done"
    assert len(open_fds()) <= len(before)
    assert seen == [EXPECTED_TYPE[name]]
