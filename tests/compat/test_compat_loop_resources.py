"""What a closed loop leaves behind. asyncio's close() releases every fd the loop owns
(selector, self-pipe) at once, even while the loop object is still referenced — programs
and test suites that keep a reference to a closed loop (a fixture, a traceback, a
``Runner`` kept around) must not hold fds until the garbage collector gets to them."""

import asyncio

from compatlib import ferroloop_xfail, open_fds


async def echo_roundtrip():
    async def handle(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"ping")
        assert await reader.read() == b"ping"
        writer.close()
        await writer.wait_closed()


@ferroloop_xfail("FINDINGS.md F2: loop.close() keeps the loop's eventfd (mio waker) open "
                 "until the loop object is garbage-collected")
def test_close_releases_fds_while_referenced(arun):
    before = open_fds()
    loop = arun.factory()
    try:
        loop.run_until_complete(echo_roundtrip())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    # `loop` is still referenced here: close() alone must have released its fds
    after = open_fds(collect=False)
    assert after == before, f"fds still open after close(): {sorted(set(after) - set(before))}"
    assert loop.is_closed()
