"""call_later / call_at / time: ordering, equal deadlines, cancellation, heap hygiene."""

import asyncio
import gc
import random
import resource
import time

import pytest


def test_time_is_monotonic_clock(loop):
    a = time.monotonic()
    t = loop.time()
    b = time.monotonic()
    assert a <= t <= b


def test_timers_fire_in_deadline_order(loop):
    out = []
    now = loop.time()
    delays = [0.03, 0.01, 0.02, 0.0, 0.015, 0.005]
    for d in delays:
        loop.call_at(now + d, out.append, d)
    loop.call_at(now + 0.05, loop.stop)
    loop.run_forever()
    assert out == sorted(delays)


def test_equal_deadlines_fire_in_scheduling_order(floop):
    # asyncio's heapq does not promise this; ferroloop does.
    out = []
    when = floop.time() + 0.01
    for i in range(200):
        floop.call_at(when, out.append, i)
    floop.call_at(when + 0.01, floop.stop)
    floop.run_forever()
    assert out == list(range(200))


def test_call_later_waits_at_least_delay(loop):
    fired = []
    t0 = loop.time()
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert fired[0] - t0 >= 0.05
    assert fired[0] - t0 < 0.5


def test_negative_and_zero_delay_run_soon(loop):
    out = []
    loop.call_later(-5, out.append, "neg")
    loop.call_later(0, out.append, "zero")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # due timers are collected after the poll of the same iteration
    assert out == ["neg", "zero"]


def test_timer_handle_api(loop):
    when = loop.time() + 10
    h = loop.call_at(when, print, "x")
    assert type(h).__name__ == "TimerHandle"
    assert h.when() == when
    assert repr(h).startswith(f"<TimerHandle when={when} ")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    assert repr(h).startswith(f"<TimerHandle cancelled when={when}")


def test_timer_handles_compare_by_deadline(loop):
    now = loop.time()
    a = loop.call_at(now + 1, print)
    b = loop.call_at(now + 2, print)
    assert a < b and b > a and a <= b and not a > b
    assert a != b
    assert hash(a) == hash(a)
    a.cancel(), b.cancel()


def test_cancelled_timer_does_not_fire(loop):
    out = []
    h = loop.call_later(0.01, out.append, "cancelled")
    loop.call_later(0.02, out.append, "kept")
    h.cancel()
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert out == ["kept"]


def test_timer_cancelled_by_earlier_timer_in_same_iteration(loop):
    out = []
    later = []
    when = loop.time() + 0.01

    def first():
        out.append("first")
        later[0].cancel()

    loop.call_at(when, first)
    later.append(loop.call_at(when, out.append, "second"))
    loop.call_at(when + 0.02, loop.stop)
    loop.run_forever()
    assert out == ["first"]


def test_delay_none_rejected(loop):
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, print)
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, print)


def test_random_timers_all_fire_in_order(loop):
    rnd = random.Random(7)
    out = []
    now = loop.time()
    whens = [now + rnd.uniform(0, 0.05) for _ in range(2000)]
    for w in whens:
        loop.call_at(w, out.append, w)
    loop.call_at(now + 0.1, loop.stop)
    loop.run_forever()
    assert out == sorted(whens)


def test_sleep_accuracy(loop):
    async def main():
        t0 = loop.time()
        await asyncio.sleep(0.05)
        return loop.time() - t0

    dt = loop.run_until_complete(main())
    assert 0.05 <= dt < 0.5


def test_cancelled_timers_are_pruned(floop):
    handles = [floop.call_later(100, print) for _ in range(1000)]
    for h in handles:
        h.cancel()
    assert floop._ferro_stats()["timers"] == 1000
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert floop._ferro_stats()["timers"] == 0


def test_million_schedule_cancel_cycles_keep_memory_flat(floop):
    """A loop that schedules and cancels a million timers must not grow."""

    def churn(n):
        for _ in range(n // 1000):
            for h in [floop.call_later(3600, print) for _ in range(1000)]:
                h.cancel()
            floop.call_soon(floop.stop)
            floop.run_forever()

    keep = floop.call_later(3600, print)  # one live timer keeps the heap non-empty
    churn(100_000)
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    churn(1_000_000)
    gc.collect()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert floop._ferro_stats()["timers"] <= 1001
    # ru_maxrss is a high-water mark in KiB: growth would show as many MB.
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
    keep.cancel()


def test_interleaved_cancel_compaction_keeps_live_timers(floop):
    out = []
    now = floop.time()
    live = []
    for i in range(3000):
        h = floop.call_at(now + 0.01 + (i % 7) * 0.001, out.append, i)
        if i % 3:
            h.cancel()
        else:
            live.append(i)
    floop.call_at(now + 0.05, floop.stop)
    floop.run_forever()
    assert sorted(out) == live
