"""A live snapshot of one loop: every pending task with its coroutine chain, the line it
is suspended at and what it waits on, and the loop's counters. Taken on the loop thread
when it answers in time (the monitor asks through call_soon_threadsafe), else by the
monitor's thread while the loop is blocked; once per request, never per callback."""

import asyncio
import os
import time

from .names import FERROLOOP_DIR, coro_name, is_program_file, task_name

_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep

# What a task waits on, by the innermost asyncio (or ferroloop) coroutine it is in.
_WAITS = {
    "sleep": "timer",
    "wait_for": "timer",
    "Timeout.__aexit__": "timer",
    "Lock.acquire": "lock",
    "Semaphore.acquire": "lock",
    "BoundedSemaphore.acquire": "lock",
    "Condition.wait": "lock",
    "Barrier.wait": "lock",
    "Event.wait": "event",
    "Queue.get": "queue",
    "Queue.put": "queue",
    "Queue.join": "queue",
    "StreamReader._wait_for_data": "IO",
    "StreamWriter.drain": "IO",
    "FlowControlMixin._drain_helper": "IO",
    "StreamWriter.wait_closed": "IO",
    "BaseEventLoop.run_in_executor": "executor",
    "to_thread": "executor",
    "Loop.shutdown_default_executor": "executor",
    "TaskGroup.__aexit__": "tasks",
    "gather": "tasks",
    "wait": "tasks",
    "as_completed": "tasks",
}


def _frames(task):
    """[(coroutine, frame)] from the task's coroutine down the await chain, outermost first."""
    out = []
    aw = task.get_coro()
    while aw is not None and len(out) < 64:
        frame = (
            getattr(aw, "cr_frame", None) or getattr(aw, "gi_frame", None) or getattr(aw, "ag_frame", None)
        )
        if frame is None:
            break
        out.append((aw, frame))
        aw = (
            getattr(aw, "cr_await", None)
            or getattr(aw, "gi_yieldfrom", None)
            or getattr(aw, "ag_await", None)
        )
    return out


def _waits_on(frames, fut):
    """timer / IO / executor / task NAME / lock / event / queue / tasks / future / ready."""
    if fut is None:
        return "ready"
    if isinstance(fut, asyncio.Task):
        return "task " + task_name(fut)
    for cb, _ in getattr(fut, "_callbacks", None) or ():
        if getattr(cb, "__qualname__", "").endswith("_call_check_cancel"):  # wrap_future
            return "executor"
    for coro, frame in reversed(frames):
        fname = frame.f_code.co_filename
        if fname.startswith(_ASYNCIO_DIR) or fname.startswith(FERROLOOP_DIR):
            name = coro_name(coro)
            kind = _WAITS.get(name)
            if kind is None and ("sock_" in name or "sendfile" in name):
                kind = "IO"
            if kind is not None:
                return kind
    if getattr(fut, "_children", None) is not None:
        return "tasks"
    if frames:
        name = coro_name(frames[-1][0]).lower()
        if any(w in name for w in ("read", "recv", "wait_for_data", "drain", "write", "accept", "connect")):
            return "IO"
    return "future"


def _awaits(frames, fut):
    """The tasks this one waits for (directly, through gather, or in a TaskGroup)."""
    out = []
    if isinstance(fut, asyncio.Task):
        out.append(fut)
    for child in getattr(fut, "_children", None) or ():
        if isinstance(child, asyncio.Task):
            out.append(child)
    for _coro, frame in frames:
        if frame.f_code.co_name == "__aexit__" and frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
            group = frame.f_locals.get("self")
            if isinstance(group, getattr(asyncio, "TaskGroup", ())):
                out.extend(t for t in getattr(group, "_tasks", ()) if not t.done())
    return out


def describe_task(task, stats, now):
    """One task as a dict (see docs/xray.md, "The live monitor")."""
    frames = _frames(task)
    fut = getattr(task, "_fut_waiter", None)
    chain = [{"name": coro_name(c), "file": f.f_code.co_filename, "line": f.f_lineno} for c, f in frames]
    where = next((c for c in reversed(chain) if is_program_file(c["file"])), chain[-1] if chain else None)
    steps, running, cpu, first, last = stats if stats is not None else (0, 0.0, 0.0, None, None)
    return {
        "id": id(task),
        "name": task_name(task),
        "given_name": task.get_name(),
        "coro": coro_name(task.get_coro()),
        "chain": chain,
        "where": f"{os.path.basename(where['file'])}:{where['line']}" if where else "?",
        "where_path": where["file"] if where else None,
        "where_func": where["name"] if where else None,
        "waits_on": _waits_on(frames, fut),
        "awaits": [id(t) for t in _awaits(frames, fut)],
        "age": now - first if first else None,
        "steps": steps,
        "running": running,
        "cpu": cpu,
        "waiting": now - last if last else None,
    }


def describe_loop(loop, answered_by, current_block=None):
    """The loop and its tasks as a dict."""
    now = time.monotonic()
    try:
        stats = loop._xray_live_stats() or {}
    except RuntimeError:  # its counters are being updated right now (an answer off-thread)
        stats = {}
    per_task = stats.pop("tasks", {})
    tasks = []
    for _ in range(3):
        try:
            pending = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:
            pending = []
    for task in pending:
        try:
            tasks.append(describe_task(task, per_task.get(task), now))
        except Exception as exc:  # a task mid-change (answered off the loop thread)
            tasks.append({"id": id(task), "name": task_name(task), "error": repr(exc)})
    sizes = loop._ferro_stats() if not loop.is_closed() else {}
    executor = getattr(loop, "_default_executor", None)
    ex = None
    if executor is not None:
        queue = getattr(executor, "_work_queue", None)
        ex = {
            "type": type(executor).__name__,
            "threads": len(getattr(executor, "_threads", ()) or ()),
            "max_workers": getattr(executor, "_max_workers", None),
            "queued": queue.qsize() if queue is not None else None,
        }
    since = stats.get("since")
    return {
        "id": id(loop),
        "running": loop.is_running(),
        "answered_by": answered_by,
        "now": now,
        "live": bool(stats),
        "since": since,
        "iterations": stats.get("iterations"),
        "entries": stats.get("entries"),
        "busy": stats.get("busy"),
        "busy_share": stats["busy"] / max(now - since, 1e-9) if since else None,
        "lag": {
            "buckets": stats.get("lag_buckets", []),
            "counts": stats.get("lag_counts", []),
            "sum": stats.get("lag_sum", 0.0),
            "max": stats.get("lag_max", 0.0),
        },
        "ready": sizes.get("ready"),
        "timers": sizes.get("timers"),
        "fds": sizes.get("sources"),
        "transports": sizes.get("transports"),
        "executor": ex,
        "blocking_now": current_block.as_dict(now) if current_block is not None else None,
        "tasks": tasks,
    }
