"""Injected into a library's own pytest run by `./dev suites` (`-p ferroloop_suite_plugin`,
this directory on PYTHONPATH); nothing of the library is edited.

FERROLOOP_SUITE_LOOP says which loop the run is on: `asyncio` (stock, the control),
`ferroloop` or `uvloop`. The suites choose their loop through asyncio's default policy when
they are not handed a factory: aiohttp's `pyloop` loop_factory (asyncio.new_event_loop),
anyio's `asyncio` backend (asyncio.Runner with loop_factory=None), pytest-asyncio (the
policy's new_event_loop), IsolatedAsyncioTestCase and asyncpg's TestCase (new_event_loop).
So the default policy's `_loop_factory` is replaced (as conformance/candidate.py does): it
survives set_event_loop_policy(None) and reaches policies subclassed from the default.
Parametrisations that name another loop themselves (anyio's asyncio+uvloop, asyncio+eager,
trio) are deselected: they would run the same loop in every column.

At the end, FERROLOOP_SUITE_STATS (a path) gets how many candidate loops were made and
ran, so a run that never touched the candidate is caught, not counted as a pass.
"""

import asyncio
import asyncio.events as events
import json
import os
import weakref

import pytest

_LOOP = os.environ.get("FERROLOOP_SUITE_LOOP", "asyncio")
_made = weakref.WeakSet()
_stats = {"loop": _LOOP, "created": 0, "ran": 0}


def _factory():
    if _LOOP == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop
    if _LOOP == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _install():
    if _LOOP == "asyncio":
        return
    # Wrapped before the candidate is imported: uvloop keeps the function it finds then.
    original = events._set_running_loop

    def set_running(loop):
        if loop is not None and loop in _made:
            _stats["ran"] += 1
        return original(loop)

    for module in (events, asyncio):
        if getattr(module, "_set_running_loop", None) is original:
            module._set_running_loop = set_running
    make = _factory()

    def candidate(*args, **kwargs):
        loop = make()
        _made.add(loop)
        _stats["created"] += 1
        return loop

    asyncio.DefaultEventLoopPolicy._loop_factory = staticmethod(candidate)


_install()


def _foreign_backend(item):
    """A parametrisation that picks its own loop (anyio's backends other than plain asyncio)."""
    spec = getattr(item, "callspec", None)
    if spec is None or "anyio_backend" not in spec.params:
        return False
    backend = spec.params["anyio_backend"]
    if isinstance(backend, str):
        return backend != "asyncio"
    name, options = backend[0], (backend[1] if len(backend) > 1 else {})
    return name != "asyncio" or options.get("loop_factory") is not None


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (drop if _foreign_backend(item) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FERROLOOP_SUITE_STATS")
    if path:
        with open(path, "w") as f:
            json.dump(_stats, f)


@pytest.hookimpl(tryfirst=True)
def pytest_report_header(config):
    return f"ferroloop suites: loop={_LOOP}"
