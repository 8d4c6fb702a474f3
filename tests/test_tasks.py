"""Futures, tasks and asyncio's high-level API on the loop: gather, TaskGroup, Semaphore,
Queue, wait_for, timeout, task factories, async generators."""

import asyncio
import contextvars
import sys

import pytest


def test_create_future_and_task(loop):
    async def work(x):
        await asyncio.sleep(0)
        return x * 2

    async def main():
        fut = loop.create_future()
        assert isinstance(fut, asyncio.Future) and fut.get_loop() is loop
        loop.call_soon(fut.set_result, "f")
        t = loop.create_task(work(21), name="worker")
        assert t.get_name() == "worker"
        return await fut, await t

    assert loop.run_until_complete(main()) == ("f", 42)


def test_create_future_reads_asyncio_future_at_each_call(loop, monkeypatch):
    """create_future() is asyncio's `futures.Future(loop=self)`: a patched Future class is
    used (the native method reads it at each call), debug mode still records where the
    future was made, and a subclass's override wins."""

    class Tagged(asyncio.Future):
        pass

    monkeypatch.setattr(asyncio.futures, "Future", Tagged)
    fut = loop.create_future()
    assert type(fut) is Tagged and fut.get_loop() is loop
    monkeypatch.undo()
    loop.set_debug(True)
    try:
        assert loop.get_debug() is True
        assert loop.create_future()._source_traceback  # future_init asked get_debug()
    finally:
        loop.set_debug(False)
    assert loop.get_debug() is False and not loop.create_future()._source_traceback
    with pytest.raises(TypeError):
        loop.create_future(1)
    with pytest.raises(TypeError):
        loop.get_debug(1)

    class Sub(type(loop)):
        def create_future(self):
            return "overridden"

    sub = Sub()
    try:
        assert sub.create_future() == "overridden"
    finally:
        sub.close()


def test_create_task_with_context(loop):
    var = contextvars.ContextVar("v", default="none")
    ctx = contextvars.Context()
    ctx.run(var.set, "inside")

    async def read():
        return var.get()

    async def main():
        return await loop.create_task(read(), context=ctx)

    assert loop.run_until_complete(main()) == "inside"


def test_task_factory(loop):
    made = []

    def factory(lp, coro, **kwargs):
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def noop():
        return 1

    async def main():
        return await loop.create_task(noop(), name="named")

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    assert loop.run_until_complete(main()) == 1
    assert len(made) == 2  # main + noop
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(1)
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_eager_task_factory(loop):
    order = []

    async def child():
        order.append("child-start")

    async def main():
        t = asyncio.create_task(child())
        order.append("after-create")
        await t

    loop.set_task_factory(asyncio.eager_task_factory)
    loop.run_until_complete(main())
    assert order == ["child-start", "after-create"]


def test_gather_and_exceptions(loop):
    async def ok(x):
        await asyncio.sleep(0.01)
        return x

    async def bad():
        await asyncio.sleep(0.005)
        raise ValueError("bad")

    async def main():
        r1 = await asyncio.gather(ok(1), ok(2), ok(3))
        r2 = await asyncio.gather(ok(1), bad(), return_exceptions=True)
        with pytest.raises(ValueError):
            await asyncio.gather(ok(1), bad())
        return r1, r2

    r1, r2 = loop.run_until_complete(main())
    assert r1 == [1, 2, 3]
    assert r2[0] == 1 and isinstance(r2[1], ValueError)


def test_taskgroup(loop):
    async def ok(x):
        await asyncio.sleep(0.01)
        return x

    async def bad():
        await asyncio.sleep(0.005)
        raise KeyError("k")

    async def main():
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(ok(i)) for i in range(5)]
        results = [t.result() for t in ts]
        cancelled = []
        try:
            async with asyncio.TaskGroup() as tg:
                slow = tg.create_task(asyncio.sleep(10))
                tg.create_task(bad())
        except* KeyError as eg:
            cancelled.append((slow.cancelled(), len(eg.exceptions)))
        return results, cancelled

    assert loop.run_until_complete(main()) == ([0, 1, 2, 3, 4], [(True, 1)])


def test_semaphore_limits_concurrency(loop):
    sem = None
    active = 0
    peak = 0

    async def job():
        nonlocal active, peak
        async with sem:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.005)
            active -= 1

    async def main():
        nonlocal sem
        sem = asyncio.Semaphore(3)
        await asyncio.gather(*(job() for _ in range(20)))

    loop.run_until_complete(main())
    assert peak == 3


def test_queue_producer_consumer(loop):
    async def main():
        q = asyncio.Queue(maxsize=5)
        got = []

        async def producer():
            for i in range(100):
                await q.put(i)
            await q.put(None)

        async def consumer():
            while (item := await q.get()) is not None:
                got.append(item)

        await asyncio.gather(producer(), consumer())
        return got

    assert loop.run_until_complete(main()) == list(range(100))


def test_wait_for_and_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.02)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await asyncio.sleep(10)
        return await asyncio.wait_for(asyncio.sleep(0.001, "done"), 1)

    assert loop.run_until_complete(main()) == "done"


def test_cancel_task(loop):
    async def main():
        t = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert loop.run_until_complete(main()) is True


def test_sleep_zero_many_times(loop):
    async def main():
        for _ in range(10_000):
            await asyncio.sleep(0)
        return True

    assert loop.run_until_complete(main())


def test_async_generators_finalized_by_shutdown(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g  # left open

    g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_asyncio_run_closes_asyncgens_and_loop():
    import ferroloop

    closed = []

    async def agen():
        try:
            yield 1
            await asyncio.sleep(10)
        finally:
            closed.append(True)

    async def main():
        g = agen()
        await g.__anext__()
        main.loop = asyncio.get_running_loop()
        main.g = g

    ferroloop.run(main())
    assert closed == [True]
    assert main.loop.is_closed()


def test_current_task_and_all_tasks(loop):
    async def child():
        await asyncio.sleep(0.01)

    async def main():
        me = asyncio.current_task()
        t = asyncio.create_task(child())
        assert me in asyncio.all_tasks() and t in asyncio.all_tasks()
        await t
        return me.get_coro().__qualname__

    assert loop.run_until_complete(main()).endswith("main")


def test_pending_task_destroyed_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def forever():
        await asyncio.Event().wait()

    async def main():
        asyncio.ensure_future(forever())
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    import gc

    gc.collect()
    assert any("Task was destroyed but it is pending" in c["message"] for c in contexts)


def test_create_task_honours_a_patched_task_class(loop, monkeypatch):
    made = []

    class MyTask(asyncio.Task):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("name"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(asyncio.tasks, "Task", MyTask)

    async def child():
        return 7

    async def main():
        t = loop.create_task(child(), name="custom")
        assert isinstance(t, MyTask) and t.get_name() == "custom"
        return await t

    assert loop.run_until_complete(main()) == 7
    assert "custom" in made


def test_create_task_argument_errors(loop):
    async def child():
        pass

    async def main():
        with pytest.raises(TypeError):
            loop.create_task()
        coro = child()
        with pytest.raises(TypeError):
            loop.create_task(coro, bogus=1)
        coro.close()
        with pytest.raises(TypeError):
            loop.create_task(42)

    loop.run_until_complete(main())
