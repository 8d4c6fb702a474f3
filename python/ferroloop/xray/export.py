"""Exports of a recording: the Chrome trace-event format (Perfetto, chrome://tracing) and
a self-contained HTML page that draws the same timeline — one lane per task, the loop
thread's busy time, executor threads and processes — with no network access needed (the
page is timeline.html beside this module, package data)."""

import html
import json
import re
from importlib import resources

from .analysis import suspension
from .model import DATAGRAM, FD, STREAM, TIMER

LOOP_PID, EXEC_PID = 1, 2
LOOP_TID, TIMERS_TID, IO_TID = 0, 1, 2


def _wait_cat(kind):
    if kind.startswith("task "):
        return "wait-task"
    return {
        "timer": "wait-timer",
        "IO": "wait-io",
        "executor": "wait-executor",
        "loop busy": "wait-busy",
    }.get(kind, "wait")


def chrome_trace(rec):
    entries = rec.entries  # materialise: also fills each task's steps
    t_base = rec.started

    def us(t):
        return round((t - t_base) * 1e6, 1)

    ev = [
        {"ph": "M", "name": "process_name", "pid": LOOP_PID, "args": {"name": "event loop"}},
        {"ph": "M", "name": "process_name", "pid": EXEC_PID, "args": {"name": "executors"}},
        {
            "ph": "M",
            "name": "thread_name",
            "pid": LOOP_PID,
            "tid": LOOP_TID,
            "args": {"name": "loop thread (busy)"},
        },
        {"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": TIMERS_TID, "args": {"name": "timers"}},
        {"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": IO_TID, "args": {"name": "IO ready"}},
    ]
    threshold = rec.blocking_threshold or float("inf")
    for e in sorted(entries.values(), key=lambda e: e.t0):
        if e.internal:
            continue
        blocked = e.duration >= threshold
        ev.append(
            {
                "ph": "X",
                "pid": LOOP_PID,
                "tid": LOOP_TID,
                "ts": us(e.t0),
                "dur": max(us(e.t1) - us(e.t0), 0.1),
                "name": ("BLOCKED: " if blocked else "") + e.label,
                "cat": "blocked" if blocked else "busy",
                "args": {"seq": e.seq, "cpu_ms": round(e.cpu * 1e3, 3)},
            }
        )
        if e.origin == TIMER:
            ev.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": LOOP_PID,
                    "tid": TIMERS_TID,
                    "ts": us(e.t0),
                    "name": "timer fired",
                    "cat": "timer",
                    "args": {"seq": e.seq},
                }
            )
        elif e.origin in (STREAM, DATAGRAM, FD):
            ev.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": LOOP_PID,
                    "tid": IO_TID,
                    "ts": us(e.t0),
                    "name": "IO ready: " + e.label,
                    "cat": "io",
                    "args": {"seq": e.seq},
                }
            )
    for seq, (armed_at, when) in rec.timers.items():
        ev.append(
            {
                "ph": "i",
                "s": "t",
                "pid": LOOP_PID,
                "tid": TIMERS_TID,
                "ts": us(armed_at),
                "name": "timer armed",
                "cat": "timer",
                "args": {"seq": seq, "due_in_ms": round((when - armed_at) * 1e3, 3)},
            }
        )
    for i, info in enumerate(t for t in rec.tasks.values() if not t.internal):
        tid = 100 + i
        ev.append(
            {
                "ph": "M",
                "name": "thread_name",
                "pid": LOOP_PID,
                "tid": tid,
                "args": {"name": f"task {info.name}"},
            }
        )
        ev.append(
            {"ph": "M", "name": "thread_sort_index", "pid": LOOP_PID, "tid": tid, "args": {"sort_index": tid}}
        )
        ev.append(
            {
                "ph": "i",
                "s": "t",
                "pid": LOOP_PID,
                "tid": tid,
                "ts": us(info.created_at),
                "name": "created",
                "cat": "task",
                "args": {"coro": info.coro},
            }
        )
        prev = None
        for step in info.steps:
            for kind, a, b in suspension(rec, prev, step) if prev is not None else ():
                ev.append(
                    {
                        "ph": "X",
                        "pid": LOOP_PID,
                        "tid": tid,
                        "ts": us(a),
                        "dur": max(us(b) - us(a), 0.1),
                        "name": f"waiting: {kind}",
                        "cat": _wait_cat(kind),
                        "args": {"on": kind},
                    }
                )
            blocked = step.duration >= threshold
            ev.append(
                {
                    "ph": "X",
                    "pid": LOOP_PID,
                    "tid": tid,
                    "ts": us(step.t0),
                    "dur": max(us(step.t1) - us(step.t0), 0.1),
                    "name": "BLOCKING the loop" if blocked else "running",
                    "cat": "blocked" if blocked else "step",
                    "args": {"seq": step.seq, "cpu_ms": round(step.cpu * 1e3, 3)},
                }
            )
            prev = step
        if info.done_at is not None:
            ev.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": LOOP_PID,
                    "tid": tid,
                    "ts": us(info.done_at),
                    "name": f"done ({info.outcome})",
                    "cat": "task",
                }
            )
    lanes = {}
    for job in rec.jobs:
        tid = lanes.setdefault(job.lane, 200 + len(lanes))
        ev.append(
            {
                "ph": "X",
                "pid": EXEC_PID,
                "tid": tid,
                "ts": us(job.t0),
                "dur": max(us(job.t1) - us(job.t0), 0.1),
                "name": job.name,
                "cat": job.kind,
            }
        )
    for lane, tid in lanes.items():
        ev.append({"ph": "M", "name": "thread_name", "pid": EXEC_PID, "tid": tid, "args": {"name": lane}})
    return {
        "traceEvents": ev,
        "displayTimeUnit": "ms",
        "otherData": {"tool": "ferroloop x-ray", "blocking_threshold_s": rec.blocking_threshold},
    }


def html_page(trace, title="ferroloop x-ray"):
    """timeline.html (package data: the page's HTML, CSS and script) with the title and
    the trace in it."""
    page = resources.files(__package__).joinpath("timeline.html").read_text(encoding="utf-8")
    data = json.dumps(trace).replace("</", "<\\/")  # never close the script element early
    parts = {"TITLE": html.escape(title), "DATA": data}
    return re.sub("@(TITLE|DATA)@", lambda m: parts[m.group(1)], page)  # one pass: data may hold "@TITLE@"
