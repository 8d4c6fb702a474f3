"""The live monitor's figures for other tools: Prometheus text (`metrics()`), and blocking
events / slow callbacks as OpenTelemetry spans when `opentelemetry-api` is installed (it
is not a dependency: without it, nothing is emitted and nothing is imported)."""

import os
import time

from . import hook

_tracer = None  # None: not looked up yet; False: no opentelemetry


def _otel_tracer():
    global _tracer
    if _tracer is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = False
        else:
            _tracer = trace.get_tracer("ferroloop.xray")
    return _tracer


def emit(event):
    """A finished BlockingEvent as a span: `ferroloop.loop.blocked` when the loop thread
    waited in a call, `ferroloop.loop.slow_callback` when it computed."""
    tracer = _otel_tracer()
    if not tracer:
        return
    # monotonic -> epoch nanoseconds, as OpenTelemetry wants
    offset = time.time_ns() - time.monotonic_ns()
    start = int(event.t0 * 1e9) + offset
    end = int(event.t1 * 1e9) + offset
    name = "ferroloop.loop.blocked" if event.kind == "blocking" else "ferroloop.loop.slow_callback"
    span = tracer.start_span(
        name,
        start_time=start,
        attributes={
            "ferroloop.kind": event.kind,
            "ferroloop.task": event.task,
            "code.location": event.where,
            "code.function": event.call,
            "ferroloop.held_s": event.t1 - event.t0,
            "ferroloop.cpu_s": event.cpu,
            "ferroloop.sampled": event.sampled,
        },
    )
    span.end(end_time=end)


def _esc(v):
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics():
    """The live figures as Prometheus text exposition (version 0.0.4). Starts live mode on
    the running loop if nothing did yet (its counters start at zero then)."""
    mon = hook.monitor()
    if mon is None:
        from .live import watch

        mon = watch()
    out = []

    def family(name, kind, help_):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    loops = []
    for i, loop in enumerate(mon.loops()):
        try:
            stats = loop._xray_live_stats()
        except RuntimeError:
            stats = None
        if stats:
            loops.append((str(i), loop, stats, loop._ferro_stats()))
    family("ferroloop_loop_lag_seconds", "histogram", "Delay between a callback becoming ready and running.")
    for lbl, _, st, _ in loops:
        cum = 0
        for bound, n in zip(st["lag_buckets"], st["lag_counts"], strict=False):
            cum += n
            out.append(f'ferroloop_loop_lag_seconds_bucket{{loop="{lbl}",le="{bound}"}} {cum}')
        cum += st["lag_counts"][-1]
        out.append(f'ferroloop_loop_lag_seconds_bucket{{loop="{lbl}",le="+Inf"}} {cum}')
        out.append(f'ferroloop_loop_lag_seconds_sum{{loop="{lbl}"}} {st["lag_sum"]:.9f}')
        out.append(f'ferroloop_loop_lag_seconds_count{{loop="{lbl}"}} {cum}')
    for name, kind, key, help_ in (
        ("ferroloop_loop_iterations_total", "counter", "iterations", "Loop iterations."),
        ("ferroloop_loop_callbacks_total", "counter", "entries", "Callbacks, task steps and IO events run."),
        ("ferroloop_loop_busy_seconds_total", "counter", "busy", "Time the loop spent running callbacks."),
    ):
        family(name, kind, help_)
        for lbl, _, st, _ in loops:
            out.append(f'{name}{{loop="{lbl}"}} {st[key]}')
    family("ferroloop_loop_lag_max_seconds", "gauge", "Longest ready-to-run delay seen.")
    for lbl, _, st, _ in loops:
        out.append(f'ferroloop_loop_lag_max_seconds{{loop="{lbl}"}} {st["lag_max"]:.9f}')
    for name, key, help_ in (
        ("ferroloop_loop_ready", "ready", "Callbacks in the ready queue."),
        ("ferroloop_loop_timers", "timers", "Timers in the heap."),
        ("ferroloop_loop_fds", "sources", "Registered IO sources."),
        ("ferroloop_loop_transports", "transports", "Native transports."),
    ):
        family(name, "gauge", help_)
        for lbl, _, _, sizes in loops:
            out.append(f'{name}{{loop="{lbl}"}} {sizes.get(key, 0)}')
    family("ferroloop_loop_tasks", "gauge", "Pending tasks.")
    import asyncio

    for lbl, loop, _, _ in loops:
        out.append(f'ferroloop_loop_tasks{{loop="{lbl}"}} {len(asyncio.all_tasks(loop))}')
    family(
        "ferroloop_blocking_events_total",
        "counter",
        "Callbacks or task steps that held the loop longer than the threshold.",
    )
    for kind, n in sorted(mon.counts.items()):
        out.append(f'ferroloop_blocking_events_total{{kind="{_esc(kind)}"}} {n}')
    family("ferroloop_blocking_seconds_total", "counter", "Time the loop was held by those events.")
    for kind, s in sorted(mon.held.items()):
        out.append(f'ferroloop_blocking_seconds_total{{kind="{_esc(kind)}"}} {s:.6f}')
    family("ferroloop_blocking_threshold_seconds", "gauge", "What counts as blocking the loop.")
    out.append(f"ferroloop_blocking_threshold_seconds {mon.blocking_threshold}")
    out.append(f"# ferroloop x-ray, pid {os.getpid()}")
    return "\n".join(out) + "\n"
