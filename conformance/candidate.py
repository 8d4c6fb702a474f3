"""Put a candidate loop behind asyncio's public loop API and record, per test, whether it ran.

Tests reach a loop through the event loop policy: `asyncio.new_event_loop()`,
`asyncio.run()`, `asyncio.Runner` and `IsolatedAsyncioTestCase` all end in
`DefaultEventLoopPolicy.new_event_loop()`, i.e. in the class attribute `_loop_factory`.
Replacing that attribute (instead of installing a policy of our own) keeps the policy's
class what the tests expect, survives `set_event_loop_policy(None)` in tearDownModule,
and reaches policies the tests subclass from the default one. Loops that tests construct
directly (`asyncio.SelectorEventLoop()`, `test_utils.TestLoop`) stay stock asyncio loops
and are not counted.

"Created" means the factory made a candidate loop during the test; "ran" means one of
those loops became the running loop (run_forever / run_until_complete / asyncio.run), seen
through `asyncio.events._set_running_loop`, which every loop calls when it starts.
"""

import asyncio
import asyncio.events as events
import importlib
import threading
import weakref

# Names under which asyncio exposes _set_running_loop. test_events swaps the public ones for
# the _py_/_c_ variants (captured at its import), so those are wrapped too.
_SET_RUNNING_NAMES = ("_set_running_loop", "_py__set_running_loop", "_c__set_running_loop")


class Tracker:
    """Per-phase record of candidate loops: reset at each test's start, read at its end."""

    def __init__(self):
        self._loops = weakref.WeakSet()
        self._lock = threading.Lock()
        self.on_change = None  # called with "created" / "ran" the first time in a phase
        self.reset()

    def reset(self):
        with self._lock:
            self.created = 0
            self.ran = False

    def add(self, loop):
        with self._lock:
            self._loops.add(loop)
            self.created += 1
            first = self.created == 1
        if first and self.on_change:
            self.on_change("created")

    def note_running(self, loop):
        if loop is not None and not self.ran and loop in self._loops:
            self.ran = True
            if self.on_change:
                self.on_change("ran")

    def snapshot(self):
        with self._lock:
            return {"created": self.created, "ran": self.ran}


def resolve(spec):
    """'module:attr' (or just 'module', meaning module:new_event_loop) -> (label, module, attr)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "new_event_loop"
    label = module_name.split(".")[0]
    return label, module_name, attr


def install(spec):
    """Make the default policy's loops come from `spec`; return the Tracker."""
    tracker = Tracker()
    for module in (events, asyncio):
        for name in _SET_RUNNING_NAMES:
            original = getattr(module, name, None)
            if original is None or getattr(original, "_conformance_wrapped", False):
                continue
            setattr(module, name, _wrap_set_running(original, tracker))

    policy_cls = asyncio.DefaultEventLoopPolicy
    stock_factory = policy_cls._loop_factory
    # Import the candidate only now, so it sees the wrapped _set_running_loop even if it
    # binds it at import time.
    _, module_name, attr = resolve(spec)
    factory = getattr(importlib.import_module(module_name), attr)
    if factory is asyncio.new_event_loop or factory is events.new_event_loop:
        # The stock baseline: asyncio.new_event_loop would come back to this factory.
        factory = stock_factory

    def candidate_loop_factory():
        loop = factory()
        tracker.add(loop)
        return loop

    policy_cls._loop_factory = staticmethod(candidate_loop_factory)
    return tracker


def _wrap_set_running(original, tracker):
    def _set_running_loop(loop):
        tracker.note_running(loop)
        return original(loop)

    _set_running_loop._conformance_wrapped = True
    _set_running_loop.__wrapped__ = original
    _set_running_loop.__name__ = original.__name__
    return _set_running_loop
