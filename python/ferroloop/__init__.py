"""ferroloop: a drop-in replacement for asyncio's event loop, written in Rust.

asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # 3.12+
ferroloop.run(main())                                        # any version
ferroloop.install(); asyncio.run(main())                     # via the policy
python -m ferroloop run script.py                            # unchanged scripts
"""

import asyncio as _asyncio
import sys as _sys
import warnings as _warnings

from ._ferroloop import Handle, TimerHandle, __version__

# The native module declares gil_used = true (docs/free-threading.md): a free-threaded
# interpreter turns its GIL back on as it loads. Forced to stay off (PYTHON_GIL=0, -X gil=0),
# the loop's state would have no guard at all: refuse rather than race.
if not getattr(_sys, "_is_gil_enabled", lambda: True)():
    raise ImportError(
        "ferroloop needs the GIL, and this free-threaded interpreter was told to keep it off "
        "(PYTHON_GIL=0 or -X gil=0); run without that setting (see docs/free-threading.md)"
    )

from ._loop import Loop  # noqa: E402

__all__ = (
    "Loop",
    "Handle",
    "TimerHandle",
    "EventLoopPolicy",
    "new_event_loop",
    "install",
    "run",
    "__version__",
)

# The Unix default policy where there is one (3.11-3.13: it carries the child-watcher API
# that asyncio.get_child_watcher()/set_child_watcher() go through), else the base one (3.14
# renamed it _BaseDefaultEventLoopPolicy); where the policy system is gone, no base at all.
_BasePolicy = (
    getattr(getattr(_asyncio, "unix_events", None), "_UnixDefaultEventLoopPolicy", None)
    or getattr(_asyncio.events, "BaseDefaultEventLoopPolicy", None)
    or getattr(_asyncio.events, "_BaseDefaultEventLoopPolicy", None)
    or object
)


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


class EventLoopPolicy(_BasePolicy):
    """An asyncio event loop policy whose loops are ferroloop loops."""

    def _loop_factory(self) -> Loop:
        return new_event_loop()

    if _BasePolicy is object:  # no policy system (3.16): what is left of the interface

        def new_event_loop(self) -> Loop:
            return new_event_loop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def install() -> None:
    """Make ferroloop asyncio's default: asyncio.run(), asyncio.Runner and
    asyncio.new_event_loop() use it (through the event loop policy where there is one)."""
    set_policy = _policy_setter()
    if set_policy is not None:
        with _warnings.catch_warnings():
            # 3.14-3.15 deprecate the policy system; install() keeps its promise there too.
            _warnings.simplefilter("ignore", DeprecationWarning)
            set_policy(EventLoopPolicy())
    else:
        _install_without_policy()


def _policy_setter():
    """The function that sets asyncio's policy, or None where the policy system is gone
    (3.16). 3.14 keeps a private, warning-free one beside the deprecated public name."""
    events = _asyncio.events
    if _sys.version_info >= (3, 14):
        private = getattr(events, "_set_event_loop_policy", None)
        if private is not None:
            return private
    return getattr(events, "set_event_loop_policy", None)


def _install_without_policy() -> None:
    # Without policies, asyncio.run() builds an asyncio.Runner, and a Runner without a
    # loop_factory calls asyncio.new_event_loop(): both get ferroloop as their default.
    runners = _asyncio.runners
    if getattr(runners.Runner, "_ferroloop_default", False):
        return
    base = runners.Runner

    class Runner(base):
        __doc__ = base.__doc__
        _ferroloop_default = True

        def __init__(self, *, debug=None, loop_factory=None):
            super().__init__(debug=debug, loop_factory=loop_factory or new_event_loop)

    Runner.__module__ = base.__module__
    Runner.__qualname__ = base.__qualname__
    runners.Runner = _asyncio.Runner = Runner
    _asyncio.events.new_event_loop = _asyncio.new_event_loop = new_event_loop


def run(main, *, debug=None, loop_factory=None, **run_kwargs):
    """asyncio.run(main) on a ferroloop loop; returns main's result."""
    factory = loop_factory or new_event_loop
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=factory, **run_kwargs)
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
