"""The one door between the loop and the x-ray.

- **The registry** (`REGISTRY`): who wants to see new loops. A recorder (`record()`,
  doctor, trace) or the live monitor (`serve()`, `FERROLOOP_XRAY_SOCKET`) registers here;
  `ferroloop._loop` imports only this module of the x-ray and calls `loop_created(loop)`
  for every new loop. The environment is read once, when the first ferroloop loop is made.
- **The loop's hook** (`LoopHook`): what a loop tells the x-ray once per task, executor
  job, error and close. Every loop holds one, `loop._xray_hook`, and calls it without a
  test: `OFF` (this base class, doing what asyncio does) until a recorder attaches itself
  (`attach`). The live monitor needs no hook (its counters are native), so a monitored
  loop keeps `OFF` and its fast paths.

A recorder attached also sets the native slot `loop._xray`, which sends create_task to
Python's `_create_task_slow` (and so to the hook); None there keeps the native
create_task. Only `attach` and `detach` write the two, together.
"""

import os
from asyncio import futures

ENV_SOCKET = "FERROLOOP_XRAY_SOCKET"


class LoopHook:
    """What a loop reports to the x-ray. This base is the x-ray off: nothing is kept,
    and an executor job is submitted as asyncio submits it."""

    __slots__ = ()

    def task_created(self, task):
        """A task was made by the loop's create_task (its caller is two frames up)."""

    def submit(self, loop, executor, func, args):
        """run_in_executor's job: the asyncio future of executor.submit(func, *args)."""
        return futures.wrap_future(executor.submit(func, *args), loop=loop)

    def exception_context(self, context):
        """An error context on its way to the loop's exception handler."""

    def loop_closing(self, loop):
        """loop.close() has begun (the loop is not closed yet)."""


OFF = LoopHook()


def attach(loop, hook):
    """`loop` reports to `hook` from now on (and makes its tasks in Python, for it)."""
    loop._xray = hook
    loop._xray_hook = hook


def detach(loop):
    loop._xray = None
    loop._xray_hook = OFF


def attached(loop):
    """Whether a recorder is attached to `loop`."""
    return getattr(loop, "_xray_hook", OFF) is not OFF


class Registry:
    """The record() blocks' recorders (innermost last: it is the one new loops go to),
    at most one live monitor, and whether the environment was read."""

    def __init__(self):
        self.recorders = []
        self.monitor = None
        self.env_checked = False

    def loop_created(self, loop):
        if not self.env_checked:
            self.env_checked = True
            path = os.environ.get(ENV_SOCKET)
            if path and self.monitor is None:
                from .live import serve_from_env

                serve_from_env(path)
        if self.recorders:
            self.recorders[-1].attach(loop)
        if self.monitor is not None:
            self.monitor.watch(loop)

    def after_fork_in_child(self):
        # the monitor's threads did not survive the fork: the child reads the environment
        # again at its first loop (a directory or "auto" gives it its own per-PID socket)
        self.env_checked = False
        self.monitor = None


REGISTRY = Registry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REGISTRY.after_fork_in_child)


def loop_created(loop):
    """Called by every ferroloop.Loop.__init__."""
    REGISTRY.loop_created(loop)


def add_recorder(rec):
    REGISTRY.recorders.append(rec)


def remove_recorder(rec):
    if rec in REGISTRY.recorders:
        REGISTRY.recorders.remove(rec)


def set_monitor(monitor):
    REGISTRY.monitor = monitor


def monitor():
    return REGISTRY.monitor
