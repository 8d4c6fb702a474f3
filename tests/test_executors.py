"""run_in_executor, to_thread, default executor and its shutdown."""

import asyncio
import concurrent.futures
import os
import threading

import pytest


def _pid_square(x):
    return os.getpid(), x * x


def test_run_in_default_executor(loop):
    async def main():
        return await loop.run_in_executor(None, threading.current_thread)

    t = loop.run_until_complete(main())
    assert t is not threading.main_thread()
    assert t.name.startswith("asyncio")


def test_to_thread(loop):
    async def main():
        return await asyncio.to_thread(lambda a, b: a + b, 2, b=3)

    assert loop.run_until_complete(main()) == 5


def test_executor_exception_propagates(loop):
    def boom():
        raise KeyError("in thread")

    async def main():
        await loop.run_in_executor(None, boom)

    with pytest.raises(KeyError, match="in thread"):
        loop.run_until_complete(main())


def test_process_pool_executor(loop):
    async def main():
        with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
            return await asyncio.gather(*(loop.run_in_executor(pool, _pid_square, i) for i in range(4)))

    results = loop.run_until_complete(main())
    assert [r[1] for r in results] == [0, 1, 4, 9]
    assert all(pid != os.getpid() for pid, _ in results)


def test_process_pool_as_default_executor(floop):
    # asyncio accepts only thread pools here; ferroloop takes any Executor.
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=1)
    floop.set_default_executor(pool)

    async def main():
        return await floop.run_in_executor(None, _pid_square, 7)

    pid, value = floop.run_until_complete(main())
    assert value == 49 and pid != os.getpid()


def test_set_default_executor_rejects_non_executor(loop):
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor"):
        loop.set_default_executor(object())


def test_set_default_executor_is_used(loop):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mine")
    loop.set_default_executor(pool)

    async def main():
        return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith("mine")


def test_shutdown_default_executor_waits_and_forbids_new_work(loop):
    finished = []

    def slow():
        threading.Event().wait(0.1)
        finished.append(True)

    async def main():
        fut = loop.run_in_executor(None, slow)
        await loop.shutdown_default_executor()
        assert finished == [True]
        await fut
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            loop.run_in_executor(None, slow)

    loop.run_until_complete(main())


def test_shutdown_default_executor_without_executor_is_noop(loop):
    loop.run_until_complete(loop.shutdown_default_executor())


def test_close_shuts_down_executor_threads(loop):
    async def main():
        await loop.run_in_executor(None, lambda: None)

    loop.run_until_complete(main())
    executor = loop._default_executor
    loop.close()
    assert executor._shutdown


def test_getaddrinfo_and_getnameinfo(loop):
    async def main():
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=0)
        name = await loop.getnameinfo(("127.0.0.1", 80), 0)
        return infos, name

    infos, name = loop.run_until_complete(main())
    assert any(info[4] == ("127.0.0.1", 80) for info in infos)
    assert name[1] in ("80", "http")
