"""call_soon_threadsafe: nothing lost, and a parked loop wakes at once."""

import threading
import time

import pytest


def test_ten_threads_times_ten_thousand_calls_none_lost(loop):
    n_threads, per_thread = 10, 10_000
    received = [0] * n_threads
    done = threading.Barrier(n_threads + 1)

    def bump(i):
        received[i] += 1

    def worker(i):
        for _ in range(per_thread):
            loop.call_soon_threadsafe(bump, i)
        done.wait()

    def finisher():
        done.wait()
        loop.call_soon_threadsafe(loop.stop)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    threads.append(threading.Thread(target=finisher))
    for t in threads:
        t.start()
    loop.run_forever()
    for t in threads:
        t.join()
    # callbacks queued before stop() ran in the final iterations
    assert received == [per_thread] * n_threads


def test_wakes_a_parked_loop_promptly(loop):
    """The loop sleeps in poll (a timer an hour away); another thread's call must wake it
    at once, not at the timer."""
    loop.call_later(3600, print)
    woke = []

    def from_thread():
        time.sleep(0.1)  # let the loop park
        woke.append(time.monotonic())
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=from_thread)
    t.start()
    loop.run_forever()
    latency = time.monotonic() - woke[0]
    t.join()
    assert latency < 0.5


def test_repeated_wakeups(loop):
    count = []

    def worker():
        for i in range(50):
            time.sleep(0.002)
            loop.call_soon_threadsafe(count.append, i)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_later(3600, print)
    t = threading.Thread(target=worker)
    t.start()
    loop.run_forever()
    t.join()
    assert count == list(range(50))


def test_threadsafe_on_closed_loop_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon_threadsafe(print)
