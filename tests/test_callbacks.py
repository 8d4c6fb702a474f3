"""call_soon and Handle: FIFO order, iteration boundaries, contexts, errors, cancel."""

import asyncio
import contextvars
import logging

import pytest

import ferroloop


def run_briefly(loop, n=1):
    for _ in range(n):
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_fifo_order(loop):
    out = []
    for i in range(100):
        loop.call_soon(out.append, i)
    run_briefly(loop)
    assert out == list(range(100))


def test_callbacks_scheduled_during_iteration_run_next_iteration(loop):
    out = []

    def a():
        out.append("a")
        loop.call_soon(out.append, "c")  # next iteration

    loop.call_soon(a)
    loop.call_soon(out.append, "b")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["a", "b"]
    run_briefly(loop)
    assert out == ["a", "b", "c"]


def test_args_are_passed(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a), 1, "two", None)
    run_briefly(loop)
    assert out == [(1, "two", None)]


def test_handle_api(loop):
    h = loop.call_soon(print, "x")
    assert type(h).__name__ == "Handle"
    assert not h.cancelled()
    assert h._callback is print and h._args == ("x",)
    assert "print" in repr(h) and repr(h).startswith("<Handle")
    h.cancel()
    assert h.cancelled()
    assert h._callback is None and h._args is None
    assert repr(h).startswith("<Handle cancelled")
    h.cancel()  # twice is fine


def test_cancelled_handle_does_not_run(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    loop.call_soon(out.append, 2)
    h.cancel()
    run_briefly(loop)
    assert out == [2]


def test_callback_cancels_later_callback_in_same_iteration(loop):
    out = []
    handles = []

    def first():
        out.append(1)
        handles[0].cancel()

    loop.call_soon(first)
    handles.append(loop.call_soon(out.append, 2))
    run_briefly(loop)
    assert out == [1]


def test_callback_runs_in_copied_context(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []
    var.set("at-schedule")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("after")
    # the copy was taken at call_soon time
    run_briefly(loop)
    assert seen == ["at-schedule"]


# A loop holding many handles keeps their context copies from the garbage collector
# (handles.rs, HandleContext): the semantics must not change, and nothing may leak or crash.
CROWD = 1000


def test_crowded_callbacks_each_run_in_their_own_copy(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []

    def probe(i):
        seen.append((i, var.get()))
        var.set(f"changed-by-{i}")  # must not leak into any other callback's copy

    for i in range(CROWD):
        var.set(f"v{i}")
        loop.call_soon(probe, i)
        loop.call_later(0, probe, CROWD + i)
    var.set("after")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert sorted(seen) == [(i, f"v{i % CROWD}") for i in range(2 * CROWD)]
    assert var.get() == "after"


def test_crowded_handles_release_their_copies(loop):
    """Cancelled, run or dropped with the closed loop: every copy is freed (no crash)."""
    import gc
    import weakref

    if not hasattr(asyncio.Handle, "get_context") and not isinstance(loop, ferroloop.Loop):
        pytest.skip("Handle.get_context is 3.12+ in asyncio")
    timers = [loop.call_later(3600, print) for _ in range(CROWD)]
    soon = [loop.call_soon(print, i) for i in range(CROWD)]
    refs = [weakref.ref(h.get_context()) for h in timers[:10] + soon[:10]]
    for t in timers:
        t.cancel()
    del timers, soon
    loop.call_soon(loop.stop)
    loop.run_forever()
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    # pending ones dropped by close()
    for i in range(CROWD):
        loop.call_soon(print, i)
        loop.call_later(3600, print)


def test_crowded_copy_handed_out_can_be_collected_in_a_cycle(loop):
    """get_context() gives the copy back to the collector: a cycle through it is found."""
    import gc
    import weakref

    if not hasattr(asyncio.Handle, "get_context") and not isinstance(loop, ferroloop.Loop):
        pytest.skip("Handle.get_context is 3.12+ in asyncio")
    var = contextvars.ContextVar("var")
    for _ in range(CROWD):
        loop.call_soon(int)
    h = loop.call_soon(int)
    ctx = h.get_context()
    assert gc.is_tracked(ctx)
    ctx.run(var.set, ctx)  # the context now holds itself
    ref = weakref.ref(ctx)
    del ctx, h
    loop.call_soon(loop.stop)
    loop.run_forever()  # the handles run and let go of their contexts
    gc.collect()
    assert ref() is None


def test_callback_runs_in_given_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.Context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def probe():
        seen.append(var.get())
        var.set("changed-by-callback")

    loop.call_soon(probe, context=ctx)
    loop.call_soon(probe, context=ctx)
    run_briefly(loop)
    assert seen == ["in-ctx", "changed-by-callback"]
    assert ctx[var] == "changed-by-callback"
    assert var.get() == "default"


def test_get_context(loop):
    if not hasattr(asyncio.Handle, "get_context") and not isinstance(loop, ferroloop.Loop):
        pytest.skip("Handle.get_context is 3.12+ in asyncio")
    ctx = contextvars.copy_context()
    h = loop.call_soon(print, context=ctx)
    assert h.get_context() is ctx
    h.cancel()


def test_exception_in_callback_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))

    def boom():
        raise ZeroDivisionError("bad")

    h = loop.call_soon(boom)
    loop.call_soon(contexts.append, "after")
    run_briefly(loop)
    assert len(contexts) == 2
    lp, ctx = contexts[0]
    assert lp is loop
    assert ctx["message"].startswith("Exception in callback")
    assert "boom" in ctx["message"]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["handle"] is h
    assert contexts[1] == "after"


def test_exception_in_callback_is_logged_by_default(loop, caplog):
    def boom():
        raise ValueError("logged")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(boom)
        run_briefly(loop)
    assert "Exception in callback" in caplog.text
    assert "ValueError: logged" in caplog.text


def test_exception_handler_errors_are_logged(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    assert "Unhandled error in exception handler" in caplog.text
    assert "handler broke" in caplog.text


def test_exception_handler_api(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    with pytest.raises(TypeError, match="A callable object or None is expected"):
        loop.set_exception_handler(42)


def test_default_exception_handler_message(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "custom message", "extra": 7})
    assert "custom message" in caplog.text
    assert "extra: 7" in caplog.text


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_non_callable_rejected_in_debug(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=f"a callable object was expected by {method}\\(\\), got 42"):
        getattr(loop, method)(42)


def test_coroutine_function_rejected_in_debug(loop):
    loop.set_debug(True)

    async def coro_fn():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon\\(\\)"):
        loop.call_soon(coro_fn)


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_ferroloop_rejects_non_callable_always(floop, method):
    # asyncio only checks in debug mode and fails later, in the exception handler;
    # ferroloop checks at once (one pointer test), with asyncio's message.
    with pytest.raises(TypeError, match=f"a callable object was expected by {method}\\(\\), got 'nope'"):
        getattr(floop, method)("nope")
    coro = asyncio.sleep(0)
    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon\\(\\)"):
        floop.call_soon(coro)
    coro.close()


def test_slow_callback_logged_in_debug(loop, caplog):
    import time

    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow)
        run_briefly(loop)
    assert "Executing <Handle" in caplog.text
    assert "slow" in caplog.text
    assert "took 0.0" in caplog.text


def test_debug_handle_has_source_traceback(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)  # this line
    tb = h._source_traceback
    assert tb and tb[-1][0] == __file__ and tb[-1][2] == "test_debug_handle_has_source_traceback"
    assert "created at" in repr(h)
    h.cancel()


def test_debug_from_env(monkeypatch):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    lp = ferroloop.new_event_loop()
    try:
        assert lp.get_debug()
    finally:
        lp.close()


def test_non_threadsafe_call_from_other_thread_raises_in_debug(loop):
    import threading

    errors = []
    loop.set_debug(True)

    def other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=other_thread).start())
    loop.run_forever()
    assert errors == ["Non-thread-safe operation invoked on an event loop other than the current one"]


def test_handles_nobody_holds_are_reused_and_held_ones_are_not(floop):
    out = []
    for i in range(10):
        floop.call_soon(out.append, i)  # handles dropped at once
    kept = floop.call_soon(out.append, "kept")
    run_briefly(floop)
    stats = floop._ferro_stats()
    assert stats["pooled_handles"] >= 10
    assert out == list(range(10)) + ["kept"]
    # the kept handle was not recycled: it stays itself, ran, let go of its callback
    assert not kept.cancelled() and kept._callback is None
    fresh = [floop.call_soon(out.append, f"again{i}") for i in range(5)]
    assert all(h is not kept for h in fresh)
    assert floop._ferro_stats()["pooled_handles"] == stats["pooled_handles"] - 5
    fresh[0].cancel()
    run_briefly(floop)
    assert out[-4:] == ["again1", "again2", "again3", "again4"]
    assert fresh[0].cancelled() and not fresh[1].cancelled()


def test_recycled_timers_keep_their_new_deadline(floop):
    fired = []
    for i in range(20):
        floop.call_later(0.001, fired.append, i)
    floop.call_later(0.01, floop.stop)
    floop.run_forever()
    assert fired == list(range(20)) and floop._ferro_stats()["pooled_timers"] >= 20
    t0 = floop.time()
    h = floop.call_later(0.05, fired.append, "late")
    assert abs(h.when() - (t0 + 0.05)) < 0.01
    floop.call_later(0.02, floop.stop)
    floop.run_forever()
    assert fired[-1] == 19  # not yet: its deadline is the new one
    floop.call_later(0.05, floop.stop)
    floop.run_forever()
    assert fired[-1] == "late"


@pytest.mark.parametrize("kind", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_handles_can_be_weakly_referenced(loop, kind):
    """Issue 11 finding 7: Handle and TimerHandle take weak references, as asyncio's do. A
    handle watched only weakly is freed once it ran (ferroloop does not reuse it for another
    callback), so the reference dies and calls back, as under asyncio."""
    import gc
    import weakref

    out, died = [], []
    schedule = {
        "call_soon": lambda: loop.call_soon(out.append, 1),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(out.append, 1),
        "call_later": lambda: loop.call_later(0, out.append, 1),
        "call_at": lambda: loop.call_at(loop.time(), out.append, 1),
    }[kind]
    for _ in range(3):  # warm up: the loop's pool has handles to reuse
        schedule()
    h = schedule()
    ref = weakref.ref(h, died.append)
    assert ref() is h
    del h
    while len(out) < 4:
        run_briefly(loop)
    gc.collect()
    assert ref() is None and died == [ref]
    # later handles are new objects, not the watched one brought back
    others = [schedule() for _ in range(5)]
    assert all(weakref.ref(o)() is o for o in others)
    while len(out) < 9:
        run_briefly(loop)


def test_weakly_referenced_cancelled_handle_dies_when_dropped(loop):
    import weakref

    h = loop.call_later(3600, print)
    ref = weakref.ref(h)
    h.cancel()
    del h
    run_briefly(loop)
    # asyncio drops cancelled timers from its heap lazily; both must eventually let go
    for _ in range(200):
        loop.call_later(3600, print).cancel()
    run_briefly(loop)
    assert ref() is None
