"""Debug-mode parity with asyncio: where things were created, ResourceWarnings."""

import asyncio
import gc
import warnings

import pytest


def test_task_destroyed_pending_reports_where_it_was_created(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def forever():
        await asyncio.Event().wait()

    async def main():
        asyncio.ensure_future(forever())  # this line
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    gc.collect()
    ctx = next(c for c in contexts if "destroyed but it is pending" in c["message"])
    tb = ctx["source_traceback"]
    assert any(fs.filename == __file__ and fs.name == "main" for fs in tb)


def test_never_awaited_coroutine_names_its_origin_in_debug(loop):
    loop.set_debug(True)

    async def coro():
        pass

    async def main():
        coro()  # never awaited

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.run_until_complete(main())
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("was never awaited" in m and "Coroutine created at" in m for m in messages)


def test_debug_mode_sets_origin_tracking_while_running(loop):
    import sys

    loop.set_debug(True)

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    assert loop.run_until_complete(main()) > 0
    assert sys.get_coroutine_origin_tracking_depth() == 0


def test_unclosed_transport_resource_warning(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname())
        srv.close()
        return tr

    tr = loop.run_until_complete(main())
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        tr.__del__()
    tr.abort()
    loop.run_until_complete(asyncio.sleep(0.01))
