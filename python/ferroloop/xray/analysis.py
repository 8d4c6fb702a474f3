"""From a recording to findings: per-task accounting (running vs waiting, what each wait
was on), the IO-bound / CPU-bound / blocking class of each task, and the tutorial's
pitfalls, each with the fix the tutorial recommends."""

import os
from dataclasses import dataclass

from .model import DATAGRAM, FD, STREAM, THREAD, TIMER, Finding, TaskStats
from .names import call_at as _call_at
from .names import user_frame

FIXES = {
    "blocking": "use the async form (await asyncio.sleep(...), an async client such as httpx or "
    "aiohttp), or move the call off the loop: await asyncio.to_thread(...)",
    "cpu": "move the computation to a process pool: await loop.run_in_executor(ProcessPoolExecutor(), ...)",
    "abandoned": "await the task (or gather it) before main() returns, or create it in an "
    "async with asyncio.TaskGroup() block",
    "unawaited": "await the coroutine, or schedule it with asyncio.create_task() and await the task",
    "orphans": "use asyncio.gather(..., return_exceptions=True), or asyncio.TaskGroup to cancel "
    "the others when one fails",
    "never_retrieved": "await the task (or call task.exception()) so its error is handled",
}


@dataclass
class Report:
    tasks: list
    findings: list
    loop_busy: float
    loop_idle: float
    wall: float
    entries: int

    def format(self):
        """Findings first, then the tasks: one row each, or — past GROUP_OVER tasks — one
        row per coroutine (count, classes, medians, the worst few by name)."""
        out = [
            f"ferroloop x-ray: {len(self.tasks)} tasks, {self.entries} loop callbacks, "
            f"loop busy {self.loop_busy:.3f}s of {self.wall:.3f}s",
            "",
        ]
        if not self.findings:
            out.append("No problems found.")
        for f in self.findings:
            out.append(str(f))
        if self.tasks and len(self.tasks) <= GROUP_OVER:
            out.append("")
            out.append(
                f"  {'task':<18} {'class':<10} {'steps':>5} {'running':>9} {'cpu':>8} {'waiting':>9}  waited on"
            )
            for t in self.tasks:
                out.append(
                    f"  {t.name:<18} {t.kind:<10} {t.steps:>5} {t.running:>8.3f}s {t.cpu:>7.3f}s "
                    f"{t.waiting:>8.3f}s  {_waits(t.waits) or '-'}"
                )
        elif self.tasks:
            out.append("")
            out.append("  tasks grouped by coroutine (medians; worst by time on the loop):")
            out.append(
                f"  {'coroutine':<24} {'tasks':>6} {'class':<16} {'steps':>5} {'running':>9} {'cpu':>8} "
                f"{'waiting':>9}  {'worst':<32} waited on (all)"
            )
            for g in group_tasks(self.tasks):
                out.append(
                    f"  {g['coro']:<24} {g['count']:>6} {g['classes']:<16} {g['steps']:>5} "
                    f"{g['running']:>8.3f}s {g['cpu']:>7.3f}s {g['waiting']:>8.3f}s  {g['worst']:<32} "
                    f"{g['waits'] or '-'}"
                )
        return "\n".join(out)


GROUP_OVER = 20  # more tasks than this: the report groups them by coroutine
GROUP_FINDINGS = 3  # more same findings (kind, place, call) than this: one line with a count


def _waits(waits):
    return ", ".join(f"{k} {v:.2f}s" for k, v in sorted(waits.items(), key=lambda kv: -kv[1]) if v >= 0.0005)


def _median(values):
    values = sorted(values)
    n = len(values)
    return 0.0 if not n else values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def group_tasks(tasks):
    """One dict per coroutine, the most tasks first."""
    groups = {}
    for t in tasks:
        groups.setdefault(t.coro, []).append(t)
    out = []
    for coro, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        classes = {}
        for t in members:
            classes[t.kind] = classes.get(t.kind, 0) + 1
        waits = {}
        for t in members:
            for k, v in t.waits.items():
                kind = "task" if k.startswith("task ") else k
                waits[kind] = waits.get(kind, 0.0) + v
        worst = sorted(members, key=lambda t: -t.running)[:3]
        out.append(
            {
                "coro": coro,
                "count": len(members),
                "classes": ", ".join(f"{n} {k}" if len(classes) > 1 else k for k, n in classes.items()),
                "steps": int(_median([t.steps for t in members])),
                "running": _median([t.running for t in members]),
                "cpu": _median([t.cpu for t in members]),
                "waiting": _median([t.waiting for t in members]),
                "worst": ", ".join(t.name for t in worst) if len(members) > 1 else members[0].name,
                "waits": _waits(waits),
            }
        )
    return out


def group_findings(findings):
    """Findings alike (same kind, place and call) beyond GROUP_FINDINGS become one, the
    worst kept with a count."""
    groups = {}
    for f in findings:
        groups.setdefault((f.kind, f.where, f.call), []).append(f)
    out = []
    for members in groups.values():
        if len(members) <= GROUP_FINDINGS:
            out.extend(members)
            continue
        members.sort(key=lambda f: -f.weight)
        head = members[0]
        head.count = len(members)
        head.others = [m.task for m in members[1:] if m.task]
        out.append(head)
    return out


def _where(fs):
    if fs is None:
        return "?"
    return f"{os.path.basename(fs.filename)}:{fs.lineno}"


def _wait_kind(rec, entry, depth=0):
    """What ended a suspension: follow the wake-up's causes to a timer, IO, a thread or a task."""
    cause = rec.entries.get(entry.cause)
    if cause is None:
        # scheduled from outside the loop's callbacks (e.g. cancelled by asyncio.run's shutdown)
        return "outside the loop" if depth == 0 else "callback"
    if cause.origin == TIMER:
        return "timer"
    if cause.origin in (STREAM, DATAGRAM, FD):
        return "IO"
    if cause.origin == THREAD:
        return "executor"
    if cause.task is not None:
        return "task " + rec._task_info(cause.task).name if cause.task is not entry.task else "itself"
    if depth < 10:
        return _wait_kind(rec, cause, depth + 1)
    return "callback"


def suspension(rec, prev, step):
    """A task's suspension between two steps, as (kind, start, end) pieces: waiting on what
    woke it (timer, IO, executor, another task) until it was woken, then "loop busy" while
    the wake-up sat in the ready queue behind other callbacks."""
    kind = _wait_kind(rec, step)
    cause = rec.entries.get(step.cause)
    woken = min(max(cause.t1, prev.t1), step.t0) if cause is not None else step.t0
    pieces = []
    if woken > prev.t1:
        pieces.append((kind, prev.t1, woken))
    if step.t0 - woken > 1e-4:
        pieces.append(("loop busy", woken, step.t0))
    return pieces


def _user_stack_frame(stack):
    return user_frame(stack)


def build_report(rec):
    entries = rec.entries  # materialise: also fills each task's steps
    threshold = rec.blocking_threshold or float("inf")
    end = rec.stopped or max((e.t1 for e in entries.values()), default=rec.started)
    stats, findings = [], []
    for info in rec.tasks.values():
        if info.internal:
            continue
        steps = info.steps
        running = sum(s.duration for s in steps)
        cpu = sum(s.cpu for s in steps)
        finish = info.done_at or end
        lifetime = max(finish - info.created_at, running)
        waits = {}
        for prev, step in zip([None] + steps, steps, strict=False):
            if prev is None:
                continue
            for kind, a, b in suspension(rec, prev, step):
                waits[kind] = waits.get(kind, 0.0) + (b - a)
        long_steps = [s for s in steps if s.duration >= threshold]
        if long_steps and any(s.cpu < 0.5 * s.duration for s in long_steps):
            kind = "blocking"
        elif long_steps or (cpu >= 0.01 and cpu >= 0.5 * lifetime):
            kind = "CPU-bound"
        else:
            kind = "IO-bound"
        stats.append(
            TaskStats(
                info.name,
                info.coro,
                _where(info.created_where),
                len(steps),
                running,
                cpu,
                max(lifetime - running, 0.0),
                waits,
                max((s.duration for s in steps), default=0.0),
                info.outcome,
                kind,
            )
        )
        for s in long_steps:
            samples = rec.samples.get(s.seq) or []
            stack = samples[0][1] if samples else []
            frame = _user_stack_frame(stack) if stack else None
            blocking = s.cpu < 0.5 * s.duration
            findings.append(
                Finding(
                    kind="blocking" if blocking else "cpu-bound",
                    task=info.name,
                    where=_where(frame),
                    call=_call_at(frame),
                    detail=(
                        f"held the loop for {s.duration:.3f}s ({s.cpu:.3f}s of it on the CPU); every other "
                        f"task waited" + ("" if samples else " (no stack sample: the call kept the GIL)")
                    ),
                    fix=FIXES["blocking" if blocking else "cpu"],
                    stack=stack,
                    weight=s.duration,
                )
            )
        if info.pending_at_main_exit and info not in rec._main_tasks.values():
            findings.append(
                Finding(
                    kind="abandoned",
                    task=info.name,
                    where=_where(info.created_where),
                    call=info.coro,
                    detail="still running when main() returned"
                    + (", so asyncio.run() cancelled it" if info.outcome == "cancelled" else ""),
                    fix=FIXES["abandoned"],
                )
            )
    for message, where in rec.unawaited:
        findings.append(
            Finding(
                kind="never-awaited",
                task="",
                where=_where(where),
                call=message.split("'")[1] if "'" in message else message,
                detail=message,
                fix=FIXES["unawaited"],
            )
        )
    for exc, where, running in rec.gather_failures:
        names = ", ".join(t.name for t in running)
        findings.append(
            Finding(
                kind="orphaned",
                task=names,
                where=_where(where),
                call="asyncio.gather",
                detail=f"gather() raised {exc} while {names} kept running unsupervised",
                fix=FIXES["orphans"],
            )
        )
    for message, exc, info in rec.exceptions:
        if "never retrieved" in message:
            findings.append(
                Finding(
                    kind="unhandled-exception",
                    task=info.name if info else "",
                    where=_where(info.created_where) if info else "?",
                    call=info.coro if info else "?",
                    detail=f"{message}: {exc!r}",
                    fix=FIXES["never_retrieved"],
                )
            )
    busy = _union(sorted((e.t0, e.t1) for e in rec.entries.values()))
    wall = end - rec.started
    order = {"blocking": 0, "cpu-bound": 1, "abandoned": 2, "never-awaited": 3, "orphaned": 4}
    findings = group_findings(findings)
    findings.sort(key=lambda f: order.get(f.kind, 9))
    return Report(stats, findings, busy, max(wall - busy, 0.0), wall, len(rec.entries))


def _union(intervals):
    total, cur_start, cur_end = 0.0, None, None
    for a, b in intervals:
        if cur_end is None or a > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_end is not None:
        total += cur_end - cur_start
    return total
