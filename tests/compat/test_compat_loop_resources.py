"""What a closed loop leaves behind. asyncio's close() releases every fd the loop owns
(selector, self-pipe) at once, even while the loop object is still referenced — programs
and test suites that keep a reference to a closed loop (a fixture, a traceback, a
``Runner`` kept around) must not hold fds until the garbage collector gets to them."""

import asyncio
import sys

from .compatlib import open_fds


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


def test_close_releases_fds_while_referenced(arun):
    """(FINDINGS.md F2, fixed.)"""
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


def test_server_wait_closed_with_a_connection_open(arun):
    """asyncio's own rule for the running Python: until 3.12.0 wait_closed() returns once
    the listening sockets are closed; from 3.12.1 it also waits for every connection.
    (FINDINGS.md F3, fixed.)"""

    async def main():
        accepted = []
        made = asyncio.Event()

        async def handle(reader, writer):
            accepted.append(writer)
            made.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        await made.wait()
        server.close()
        waiting = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.1)
        try:
            if sys.version_info >= (3, 12, 1):
                assert not waiting.done(), "3.12.1+: wait_closed() waits for open connections"
            else:
                assert waiting.done(), "3.11: wait_closed() returns once the server is closed"
        finally:
            accepted[0].close()
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(waiting, 5)

    arun(main)


def test_handle_in_error_context_keeps_its_repr(arun):
    """Error-reporting code (Sentry-style handlers, logging in a queue) keeps the context
    and formats it later: asyncio's Handle still names its callback then."""

    def boom():
        raise ZeroDivisionError

    async def main():
        loop = asyncio.get_running_loop()
        kept = []
        loop.set_exception_handler(lambda lp, ctx: kept.append(ctx))
        loop.call_soon(boom)
        await asyncio.sleep(0.01)
        loop.set_exception_handler(None)
        assert len(kept) == 1 and isinstance(kept[0]["exception"], ZeroDivisionError)
        assert "boom()" in repr(kept[0]["handle"]), repr(kept[0]["handle"])

    arun(main)
