"""The handle call_soon_threadsafe returns, with each Python's semantics (src/threadsafe.rs).

3.14 made it a `_ThreadSafeHandle`: cancel() and cancelled() from another thread wait while
its callback runs (an RLock held across the run). 3.11-3.13's plain Handle never waits.
ferroloop follows the running Python; 3.14's contract is held here by switching the loop
to it (`_threadsafe_cancel_waits`), since 3.14 cannot run on this machine.
"""

import sys
import threading

import pytest

# How long a wrong-semantics cancel gets to show itself (returning while the callback still
# runs); with the right semantics this wait simply times out. Not a synchronisation.
WINDOW = 0.3


def _run_once(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_default_follows_the_running_python(floop):
    assert floop._threadsafe_cancel_waits is (sys.version_info >= (3, 14))


def _cancel_while_running(loop, schedule=None):
    """Cancels, from another thread, a threadsafe handle whose callback is running; returns
    what the callback saw (did cancel() return while it ran?) and the order of events."""
    started, cancel_called, cancel_returned = threading.Event(), threading.Event(), threading.Event()
    seen = {}
    order = []

    def callback():
        started.set()
        assert cancel_called.wait(10)
        seen["cancel returned while running"] = cancel_returned.wait(WINDOW)
        order.append("callback done")

    handle = (schedule or loop.call_soon_threadsafe)(callback)

    def canceller():
        assert started.wait(10)
        cancel_called.set()
        handle.cancel()
        order.append("cancel returned")
        cancel_returned.set()

    t = threading.Thread(target=canceller)
    t.start()
    _run_once(loop)
    t.join(10)
    assert not t.is_alive()
    return seen["cancel returned while running"], order, handle


def test_314_cancel_waits_for_the_running_callback(floop):
    floop._threadsafe_cancel_waits = True
    early, order, handle = _cancel_while_running(floop)
    assert early is False
    assert order == ["callback done", "cancel returned"]
    assert handle.cancelled()  # cancelled after the run, as 3.14's lock orders it


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.11-3.13 semantics")
def test_up_to_313_cancel_does_not_wait(loop):
    # ferroloop as asyncio itself on this Python (the `loop` fixture runs both)
    early, order, _ = _cancel_while_running(loop)
    assert early is True
    assert order == ["cancel returned", "callback done"]


def test_314_cancel_from_inside_the_callback_does_not_wait(floop):
    # On the loop thread the RLock is already ours: cancel() inside the callback returns.
    floop._threadsafe_cancel_waits = True
    box = {}

    def callback():
        box["h"].cancel()
        box["cancelled"] = box["h"].cancelled()

    box["h"] = floop.call_soon_threadsafe(callback)
    _run_once(floop)
    assert box["cancelled"] is True


def test_314_cancel_before_the_run_prevents_it(floop):
    floop._threadsafe_cancel_waits = True
    ran = []
    h = floop.call_soon_threadsafe(ran.append, 1)
    t = threading.Thread(target=h.cancel)
    t.start()
    t.join(10)
    _run_once(floop)
    assert ran == [] and h.cancelled()


def test_314_cancelled_also_waits(floop):
    floop._threadsafe_cancel_waits = True
    started, asked, answered = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def callback():
        started.set()
        assert asked.wait(10)
        seen["answered while running"] = answered.wait(WINDOW)

    h = floop.call_soon_threadsafe(callback)

    def asker():
        assert started.wait(10)
        asked.set()
        seen["cancelled"] = h.cancelled()
        answered.set()

    t = threading.Thread(target=asker)
    t.start()
    _run_once(floop)
    t.join(10)
    assert seen == {"answered while running": False, "cancelled": False}


def test_314_handles_reused_from_the_pool_keep_their_own_semantics(floop):
    # A pooled handle that served call_soon_threadsafe serves call_soon next: a plain
    # handle, whose cancel never waits (asyncio's call_soon returns a plain Handle).
    floop._threadsafe_cancel_waits = True
    for _ in range(3):
        floop.call_soon_threadsafe(lambda: None)
        _run_once(floop)
    early, order, _ = _cancel_while_running(floop, schedule=floop.call_soon)
    assert early is True
