"""The micro-benchmarks: each is `async def bench(n) -> ops`, run inside the loop under test.

They use only the public asyncio API, so every loop runs the same code. `n` is the size
chosen by the runner (full or --quick); the return value is the number of operations the
per-op figures divide by, checked against what actually happened.
"""

import asyncio
import random
import threading

# Timers: delays drawn uniformly from [0, TIMER_SPREAD) seconds with a fixed seed, short
# enough that the run measures the loop's timer cost rather than time spent sleeping.
TIMER_SPREAD = 0.01


async def call_soon(n):
    """One call_soon chain: each callback schedules the next, n callbacks in all."""
    return await _chains(n, 1)


async def call_soon_100(n):
    """100 call_soon chains in parallel, n callbacks in all."""
    return await _chains(n, 100)


async def _chains(n, chains):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    per = n // chains
    left = [chains]

    def step(i):
        if i > 1:
            loop.call_soon(step, i - 1)
        else:
            left[0] -= 1
            if not left[0]:
                done.set_result(None)

    for _ in range(chains):
        loop.call_soon(step, per)
    await done
    return per * chains


async def timers(n):
    """n call_later timers with random delays; all fire."""
    return await _timers(n, cancel_half=False)


async def timers_cancel(n):
    """n call_later timers with random delays; every second one cancelled before it fires."""
    return await _timers(n, cancel_half=True)


async def _timers(n, cancel_half):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    rng = random.Random(42)
    expected = n - n // 2 if cancel_half else n
    fired = [0]
    wrong = []

    def fire(i):
        if cancel_half and i % 2:
            wrong.append(i)  # a cancelled timer ran
        fired[0] += 1
        if fired[0] == expected:
            done.set_result(None)

    call_later = loop.call_later
    handles = [call_later(rng.random() * TIMER_SPREAD, fire, i) for i in range(n)]
    if cancel_half:
        for h in handles[1::2]:
            h.cancel()
    del handles
    await done
    if wrong:
        raise AssertionError(f"{len(wrong)} cancelled timers fired")
    return n


async def _leaf():
    await asyncio.sleep(0)  # one suspension: each task takes two steps
    return 1


async def tasks_gather(n):
    """n tasks through asyncio.gather."""
    results = await asyncio.gather(*[_leaf() for _ in range(n)])
    if sum(results) != n:
        raise AssertionError("gather lost results")
    return n


async def tasks_taskgroup(n):
    """n tasks through asyncio.TaskGroup."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_leaf()) for _ in range(n)]
    if sum(t.result() for t in tasks) != n:
        raise AssertionError("TaskGroup lost results")
    return n


async def sleep0(n):
    """One coroutine doing `await asyncio.sleep(0)` n times."""
    sleep = asyncio.sleep
    for _ in range(n):
        await sleep(0)
    return n


async def queue(n):
    """A producer and a consumer through asyncio.Queue(maxsize=256); n items."""
    q = asyncio.Queue(maxsize=256)

    async def producer():
        put = q.put
        for i in range(n):
            await put(i)

    async def consumer():
        get = q.get
        total = 0
        for _ in range(n):
            total += await get()
        return total

    _, total = await asyncio.gather(producer(), consumer())
    if total != n * (n - 1) // 2:
        raise AssertionError("queue lost items")
    return n


THREADSAFE_THREADS = 2


async def threadsafe(n):
    """call_soon_threadsafe from 2 other threads, n callbacks in all."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    got = [0]
    per = n // THREADSAFE_THREADS
    total = per * THREADSAFE_THREADS

    def cb():
        got[0] += 1
        if got[0] == total:
            done.set_result(None)

    def worker():
        cst = loop.call_soon_threadsafe
        for _ in range(per):
            cst(cb)

    threads = [threading.Thread(target=worker) for _ in range(THREADSAFE_THREADS)]
    for t in threads:
        t.start()
    try:
        await done
    finally:
        for t in threads:
            t.join()
    return total


# name -> (function, full size, quick size, what one op is)
BENCHMARKS = {
    "call_soon": (call_soon, 1_000_000, 20_000, "callback"),
    "call_soon_100": (call_soon_100, 1_000_000, 20_000, "callback"),
    "timers": (timers, 100_000, 5_000, "timer"),
    "timers_cancel": (timers_cancel, 100_000, 5_000, "timer"),
    "tasks_gather": (tasks_gather, 100_000, 5_000, "task"),
    "tasks_taskgroup": (tasks_taskgroup, 100_000, 5_000, "task"),
    "sleep0": (sleep0, 1_000_000, 20_000, "sleep"),
    "queue": (queue, 200_000, 5_000, "item"),
    "threadsafe": (threadsafe, 200_000, 5_000, "callback"),
}
