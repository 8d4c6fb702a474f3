"""`python -m ferroloop ps|pstree|top TARGET`: a live monitor's snapshot for a person."""

import os
import shutil
import sys
import time

from .client import Client, MonitorError


def _dur(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f}us"
    if s < 1:
        return f"{s * 1e3:.1f}ms"
    if s < 120:
        return f"{s:.1f}s"
    return f"{s / 60:.0f}m"


def _tasks(snap):
    for loop in snap["loops"]:
        yield from loop["tasks"]


def _stack(task, innermost_first=True):
    names = [c["name"] for c in task.get("chain", ())]
    return " <- ".join(reversed(names)) if innermost_first else " -> ".join(names)


def _table(headers, rows, width=None, caps=()):
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            cap = caps[i] if i < len(caps) else 60 if i < len(headers) - 1 else 1000
            widths[i] = min(max(widths[i], len(cell)), cap)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    for r in rows:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths, strict=False)]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
    if width:
        out = [line[:width] for line in out]
    return out


def ps_lines(snap):
    """The tasks as a table, like Python 3.14's `python -m asyncio ps`."""
    awaited_by = {}
    for t in _tasks(snap):
        for child in t.get("awaits", ()):
            awaited_by.setdefault(child, []).append(t["name"])
    rows = []
    for t in sorted(_tasks(snap), key=lambda t: (t.get("age") is None, -(t.get("age") or 0))):
        where = t.get("where", "?") + (f" in {t['where_func']}" if t.get("where_func") else "")
        rows.append(
            [
                f"0x{t['id']:x}",
                t["name"],
                t.get("waits_on", "?"),
                where,
                _dur(t.get("age")),
                str(t.get("steps", 0)),
                _dur(t.get("cpu")),
                _stack(t),
                ", ".join(awaited_by.get(t["id"], ())) or "-",
            ]
        )
    head = [
        f"pid {snap['pid']}: {len(rows)} tasks"
        + "".join(
            f", loop {i}: {'running' if lp['running'] else 'stopped'}" for i, lp in enumerate(snap["loops"])
        )
    ]
    return head + _table(
        [
            "task id",
            "task name",
            "waits on",
            "suspended at",
            "age",
            "steps",
            "cpu",
            "coroutine stack",
            "awaited by",
        ],
        rows,
    )


def pstree_lines(snap):
    """Who awaits whom: each task under the task(s) waiting for it."""
    tasks = {t["id"]: t for t in _tasks(snap)}
    children = {}
    awaited = set()
    for t in tasks.values():
        for child in t.get("awaits", ()):
            if child in tasks:
                children.setdefault(t["id"], []).append(child)
                awaited.add(child)
    out = []

    def node(tid, prefix, last, seen):
        t = tasks[tid]
        branch = "" if prefix is None else prefix + ("└── " if last else "├── ")
        label = f"{t['name']}  [{t.get('waits_on', '?')}]  {t.get('where', '?')}"
        if t.get("where_func"):
            label += f" in {t['where_func']}"
        out.append(branch + label)
        if tid in seen:
            return
        kids = children.get(tid, [])
        inner = "" if prefix is None else prefix + ("    " if last else "│   ")
        for i, k in enumerate(kids):
            node(k, inner, i == len(kids) - 1, seen | {tid})

    roots = [tid for tid in tasks if tid not in awaited]
    for tid in roots or list(tasks)[:1]:
        node(tid, None, True, frozenset())
    return out or ["(no tasks)"]


def lag_quantile(lag, q, base=None):
    counts = lag.get("counts") or []
    if base:
        counts = [a - b for a, b in zip(counts, base.get("counts") or [0] * len(counts), strict=False)]
    total = sum(counts)
    if not total:
        return None
    bounds = list(lag.get("buckets") or []) + [float("inf")]
    cum = 0
    for bound, n in zip(bounds, counts, strict=False):
        cum += n
        if cum >= q * total:
            return bound if bound != float("inf") else lag.get("max")
    return lag.get("max")


SORTS = {"cpu": "CPU", "wait": "waiting", "age": "age", "steps": "steps", "name": "name"}


def top_lines(snap, prev=None, sort="cpu", width=120, height=40):
    """One frame of `top`."""
    out = []
    now = snap["now"]
    prev_loops = {lp["id"]: lp for lp in (prev or {}).get("loops", ())}
    for i, lp in enumerate(snap["loops"]):
        before = prev_loops.get(lp["id"])
        if before and lp.get("busy") is not None and before.get("busy") is not None:
            dt = max(lp["now"] - before["now"], 1e-9)
            busy = (lp["busy"] - before["busy"]) / dt
            iters = (lp["iterations"] - before["iterations"]) / dt
            base = before["lag"]
        else:
            busy, iters, base = lp.get("busy_share"), None, None
        p50, p99 = lag_quantile(lp["lag"], 0.5, base), lag_quantile(lp["lag"], 0.99, base)
        ex = lp.get("executor") or {}
        out.append(
            f"ferroloop top — pid {snap['pid']}  loop {i} {'running' if lp['running'] else 'stopped'}"
            f"  tasks {len(lp['tasks'])}  ready {lp.get('ready')}  fds {lp.get('fds')}"
            f"  transports {lp.get('transports')}"
            + (f"  executor {ex.get('threads')} threads, {ex.get('queued')} queued" if ex else "")
        )
        if lp.get("blocking_now"):
            busy = 1.0  # held right now (its time is counted once the entry ends)
        out.append(f"  busy {busy * 100:.0f}%" if busy is not None else "  busy -")
        out[-1] += (
            f"  iterations/s {iters:.0f}" if iters is not None else f"  iterations {lp.get('iterations')}"
        )
        out[-1] += f"  lag p50 {_dur(p50)} p99 {_dur(p99)} max {_dur(lp['lag'].get('max'))}"
        if not lp["answered_by"].startswith("loop"):
            out[-1] += f"  ({lp['answered_by']})"
        block = lp.get("blocking_now")
        if block:
            out.append(
                f"\x1b[1;31m  BLOCKED NOW {_dur(block['held'])}: {block['call']} at {block['where']}"
                f" ({block['task'] or 'callback'})\x1b[0m"
            )
    events = snap.get("blocking", [])
    out.append("")
    out.append(
        f"blocking events ({sum(snap.get('blocking_counts', {}).values())}, threshold "
        f"{_dur(snap.get('threshold'))}), newest first:"
    )
    for e in list(reversed(events))[:5]:
        ago = now - (e["t0"] + e["held"])
        out.append(
            f"  {_dur(ago):>7} ago  [{e['kind']}] {e['call']} at {e['where']}  held {_dur(e['held'])}"
            f"  {e['task']}" + ("" if e["sampled"] else "  (no stack sample)")
        )
    if not events:
        out.append("  (none)")
    out.append("")
    prev_tasks = {t["id"]: t for t in _tasks(prev)} if prev else {}
    rows = []
    tasks = list(_tasks(snap))
    for t in tasks:
        p = prev_tasks.get(t["id"])
        t["cpu_now"] = (t.get("cpu", 0) - p.get("cpu", 0)) if p else t.get("cpu", 0)
    key = {
        "cpu": lambda t: -(t.get("cpu_now") or 0),
        "wait": lambda t: -(t.get("waiting") or 0),
        "age": lambda t: -(t.get("age") or 0),
        "steps": lambda t: -(t.get("steps") or 0),
        "name": lambda t: t["name"],
    }[sort]
    tasks.sort(key=key)
    for t in tasks[: max(height - len(out) - 3, 5)]:
        rows.append(
            [
                t["name"],
                t.get("where", "?") + (f" in {t['where_func']}" if t.get("where_func") else ""),
                t.get("waits_on", "?"),
                _dur(t.get("cpu_now")),
                _dur(t.get("cpu")),
                _dur(t.get("waiting")),
                _dur(t.get("age")),
                str(t.get("steps", 0)),
            ]
        )
    out += _table(
        ["task", "suspended at", "waits on", "cpu now", "cpu", "waiting", "age", "steps"],
        rows,
        caps=[36, 44, 28],
    )
    out.append("")
    out.append(f"sorted by {SORTS[sort]}  —  keys: c cpu  w waiting  a age  s steps  n name  q quit")
    return [line if len(line) <= width or "\x1b" in line else line[:width] for line in out]


def cmd_ps(target, out=sys.stdout):
    with Client(target) as c:
        snap = c.ask("snapshot")
    print("\n".join(ps_lines(snap)), file=out)
    return 0


def cmd_pstree(target, out=sys.stdout):
    with Client(target) as c:
        snap = c.ask("snapshot")
    print("\n".join(pstree_lines(snap)), file=out)
    return 0


def cmd_top(target, interval=1.0, sort="cpu", iterations=None, out=sys.stdout):
    """Refreshes every `interval` seconds until q (or `iterations` frames)."""
    keys = {"c": "cpu", "w": "wait", "a": "age", "s": "steps", "n": "name"}
    tty = sys.stdin.isatty()
    saved = None
    if tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(sys.stdin)
        ttymod.setcbreak(sys.stdin.fileno())
    prev = None
    frames = 0
    try:
        with Client(target) as c:
            while iterations is None or frames < iterations:
                snap = c.ask("snapshot")
                size = shutil.get_terminal_size((120, 40))
                lines = top_lines(snap, prev, sort, size.columns, size.lines)
                out.write("\x1b[H\x1b[2J" + "\n".join(lines[: size.lines - 1]) + "\n")
                out.flush()
                prev, frames = snap, frames + 1
                deadline = time.monotonic() + interval
                while tty:
                    import select

                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    r, _, _ = select.select([sys.stdin], [], [], left)
                    if r:
                        ch = os.read(sys.stdin.fileno(), 1).decode(errors="ignore").lower()
                        if ch == "q":
                            return 0
                        if ch in keys:
                            sort = keys[ch]
                            break
                if not tty:
                    time.sleep(interval)  # the refresh period itself, not a wait on a condition
    except KeyboardInterrupt:
        return 0
    except MonitorError as exc:
        print(f"ferroloop top: {exc}", file=sys.stderr)
        return 1
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
    return 0
