"""The one door between the loop and the x-ray.

`ferroloop._loop` imports only this module of the x-ray and calls `loop_created(loop)` for
every new loop; whoever wants to see loops — a recorder (`record()`, doctor, trace) or the
live monitor (`serve()`, `FERROLOOP_XRAY_SOCKET`) — registers here. A loop attached to a
recorder has it as `loop._xray`, the object the loop reports its once-per-task and
once-per-error events to; the monitor needs no such calls (its counters are native), so a
monitored loop keeps `_xray` None and its fast paths (native create_task).

The environment is read once, when the first ferroloop loop is made.
"""

import os

_recorders = []  # record() blocks, innermost last: the innermost one records new loops
_monitors = []  # at most one live monitor
_env_checked = False

ENV_SOCKET = "FERROLOOP_XRAY_SOCKET"


def add_recorder(rec):
    _recorders.append(rec)


def remove_recorder(rec):
    if rec in _recorders:
        _recorders.remove(rec)


def set_monitor(monitor):
    _monitors[:] = [monitor] if monitor is not None else []


def monitor():
    return _monitors[0] if _monitors else None


def recording():
    return bool(_recorders)


def _after_fork_in_child():
    # the monitor's threads did not survive the fork: the child reads the environment
    # again at its first loop (a directory or "auto" gives it its own per-PID socket)
    global _env_checked
    _env_checked = False
    _monitors.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def loop_created(loop):
    """Called by every ferroloop.Loop.__init__."""
    global _env_checked
    if not _env_checked:
        _env_checked = True
        path = os.environ.get(ENV_SOCKET)
        if path and not _monitors:
            from .live import serve_from_env

            serve_from_env(path)
    if _recorders:
        _recorders[-1].attach(loop)
    if _monitors:
        _monitors[0].watch(loop)
