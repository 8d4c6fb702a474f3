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
from ._loop import Loop

__all__ = ("Loop", "Handle", "TimerHandle", "EventLoopPolicy", "new_event_loop", "install", "run", "__version__")

# The Unix default policy where there is one (3.11-3.13: it carries the child-watcher API
# that asyncio.get_child_watcher()/set_child_watcher() go through), else the base one.
_BasePolicy = (
    getattr(getattr(_asyncio, "unix_events", None), "_UnixDefaultEventLoopPolicy", None)
    or getattr(_asyncio.events, "BaseDefaultEventLoopPolicy", None)
    or getattr(_asyncio.events, "_BaseDefaultEventLoopPolicy")
)


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


class EventLoopPolicy(_BasePolicy):
    """An asyncio event loop policy whose loops are ferroloop loops."""

    def _loop_factory(self) -> Loop:
        return new_event_loop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def install() -> None:
    """Make ferroloop asyncio's default: asyncio.run() and new_event_loop() use it."""
    with _warnings.catch_warnings():
        # 3.14 deprecates the policy system; install() keeps its promise there too.
        _warnings.simplefilter("ignore", DeprecationWarning)
        _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None, loop_factory=None, **run_kwargs):
    """asyncio.run(main) on a ferroloop loop; returns main's result."""
    factory = loop_factory or new_event_loop
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=factory, **run_kwargs)
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
