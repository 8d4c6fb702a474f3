"""Exports of a recording: the Chrome trace-event format (Perfetto, chrome://tracing) and
a self-contained HTML page that draws the same timeline — one lane per task, the loop
thread's busy time, executor threads and processes — with no network access needed."""

import html
import json

from .analysis import suspension
from .model import DATAGRAM, FD, STREAM, TIMER

LOOP_PID, EXEC_PID = 1, 2
LOOP_TID, TIMERS_TID, IO_TID = 0, 1, 2


def _wait_cat(kind):
    if kind.startswith("task "):
        return "wait-task"
    return {"timer": "wait-timer", "IO": "wait-io", "executor": "wait-executor",
            "loop busy": "wait-busy"}.get(kind, "wait")


def chrome_trace(rec):
    entries = rec.entries  # materialise: also fills each task's steps
    t_base = rec.started

    def us(t):
        return round((t - t_base) * 1e6, 1)

    ev = [
        {"ph": "M", "name": "process_name", "pid": LOOP_PID, "args": {"name": "event loop"}},
        {"ph": "M", "name": "process_name", "pid": EXEC_PID, "args": {"name": "executors"}},
        {"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": LOOP_TID, "args": {"name": "loop thread (busy)"}},
        {"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": TIMERS_TID, "args": {"name": "timers"}},
        {"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": IO_TID, "args": {"name": "IO ready"}},
    ]
    threshold = rec.blocking_threshold or float("inf")
    for e in sorted(entries.values(), key=lambda e: e.t0):
        if e.internal:
            continue
        blocked = e.duration >= threshold
        ev.append({"ph": "X", "pid": LOOP_PID, "tid": LOOP_TID, "ts": us(e.t0), "dur": max(us(e.t1) - us(e.t0), 0.1),
                   "name": ("BLOCKED: " if blocked else "") + e.label, "cat": "blocked" if blocked else "busy",
                   "args": {"seq": e.seq, "cpu_ms": round(e.cpu * 1e3, 3)}})
        if e.origin == TIMER:
            ev.append({"ph": "i", "s": "t", "pid": LOOP_PID, "tid": TIMERS_TID, "ts": us(e.t0),
                       "name": "timer fired", "cat": "timer", "args": {"seq": e.seq}})
        elif e.origin in (STREAM, DATAGRAM, FD):
            ev.append({"ph": "i", "s": "t", "pid": LOOP_PID, "tid": IO_TID, "ts": us(e.t0),
                       "name": "IO ready: " + e.label, "cat": "io", "args": {"seq": e.seq}})
    for seq, (armed_at, when) in rec.timers.items():
        ev.append({"ph": "i", "s": "t", "pid": LOOP_PID, "tid": TIMERS_TID, "ts": us(armed_at),
                   "name": "timer armed", "cat": "timer", "args": {"seq": seq, "due_in_ms": round((when - armed_at) * 1e3, 3)}})
    for i, info in enumerate(t for t in rec.tasks.values() if not t.internal):
        tid = 100 + i
        ev.append({"ph": "M", "name": "thread_name", "pid": LOOP_PID, "tid": tid, "args": {"name": f"task {info.name}"}})
        ev.append({"ph": "M", "name": "thread_sort_index", "pid": LOOP_PID, "tid": tid, "args": {"sort_index": tid}})
        ev.append({"ph": "i", "s": "t", "pid": LOOP_PID, "tid": tid, "ts": us(info.created_at), "name": "created",
                   "cat": "task", "args": {"coro": info.coro}})
        prev = None
        for step in info.steps:
            for kind, a, b in (suspension(rec, prev, step) if prev is not None else ()):
                ev.append({"ph": "X", "pid": LOOP_PID, "tid": tid, "ts": us(a), "dur": max(us(b) - us(a), 0.1),
                           "name": f"waiting: {kind}", "cat": _wait_cat(kind), "args": {"on": kind}})
            blocked = step.duration >= threshold
            ev.append({"ph": "X", "pid": LOOP_PID, "tid": tid, "ts": us(step.t0),
                       "dur": max(us(step.t1) - us(step.t0), 0.1), "name": "BLOCKING the loop" if blocked else "running",
                       "cat": "blocked" if blocked else "step", "args": {"seq": step.seq, "cpu_ms": round(step.cpu * 1e3, 3)}})
            prev = step
        if info.done_at is not None:
            ev.append({"ph": "i", "s": "t", "pid": LOOP_PID, "tid": tid, "ts": us(info.done_at),
                       "name": f"done ({info.outcome})", "cat": "task"})
    lanes = {}
    for job in rec.jobs:
        tid = lanes.setdefault(job.lane, 200 + len(lanes))
        ev.append({"ph": "X", "pid": EXEC_PID, "tid": tid, "ts": us(job.t0), "dur": max(us(job.t1) - us(job.t0), 0.1),
                   "name": job.name, "cat": job.kind})
    for lane, tid in lanes.items():
        ev.append({"ph": "M", "name": "thread_name", "pid": EXEC_PID, "tid": tid, "args": {"name": lane}})
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "otherData": {"tool": "ferroloop x-ray", "blocking_threshold_s": rec.blocking_threshold}}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }}
 h1 {{ font-size: 18px; margin: 0 0 4px; }}
 #meta {{ color: #666; margin-bottom: 10px; }}
 #legend span {{ display: inline-block; margin-right: 14px; }}
 #legend i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }}
 svg {{ background: #fff; border: 1px solid #ddd; }}
 .lane-label {{ font-size: 12px; fill: #333; }}
 .axis {{ font-size: 11px; fill: #777; }}
 .grid {{ stroke: #eee; }}
 .bar:hover {{ stroke: #000; stroke-width: 1; }}
</style></head>
<body>
<h1>{title}</h1>
<div id="meta"></div>
<div id="legend"></div>
<div id="chart"></div>
<script id="trace" type="application/json">{data}</script>
<script>
(function () {{
  const trace = JSON.parse(document.getElementById("trace").textContent);
  const ev = trace.traceEvents;
  const names = {{}};
  ev.filter(e => e.ph === "M" && e.name === "thread_name").forEach(e => names[e.pid + ":" + e.tid] = e.args.name);
  const colors = {{ busy: "#4e79a7", blocked: "#e15759", step: "#59a14f", wait: "#d9d9d9",
                    "wait-timer": "#f3e3a1", "wait-io": "#bfe3df", "wait-executor": "#f9cfa0",
                    "wait-task": "#d6d6d6", "wait-busy": "#f4b6b7",
                    thread: "#f28e2b", process: "#b07aa1", other: "#9c755f", timer: "#edc948", io: "#76b7b2", task: "#333" }};
  const lanesOrder = [];
  const lanes = {{}};
  ev.filter(e => e.ph === "X" || e.ph === "i").forEach(e => {{
    const key = e.pid + ":" + e.tid;
    if (!lanes[key]) {{ lanes[key] = []; lanesOrder.push(key); }}
    lanes[key].push(e);
  }});
  lanesOrder.sort((a, b) => {{
    const [pa, ta] = a.split(":").map(Number), [pb, tb] = b.split(":").map(Number);
    return pa - pb || ta - tb;
  }});
  let tmax = 0;
  ev.forEach(e => {{ if (e.ts !== undefined) tmax = Math.max(tmax, e.ts + (e.dur || 0)); }});
  tmax = Math.max(tmax, 1);
  const left = 190, width = Math.max(900, window.innerWidth - 60), plot = width - left - 20, rowH = 26, top = 28;
  const height = top + lanesOrder.length * rowH + 10;
  const x = t => left + (t / tmax) * plot;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("id", "timeline");
  const el = (tag, attrs, parent) => {{ const n = document.createElementNS(NS, tag);
    for (const k in attrs) n.setAttribute(k, attrs[k]); (parent || svg).appendChild(n); return n; }};
  const ticks = 10;
  for (let i = 0; i <= ticks; i++) {{
    const t = tmax * i / ticks, xx = x(t);
    el("line", {{ x1: xx, x2: xx, y1: top - 6, y2: height, class: "grid" }});
    const lab = el("text", {{ x: xx, y: 14, class: "axis", "text-anchor": "middle" }});
    lab.textContent = (t / 1000).toFixed(t / 1000 < 10 ? 1 : 0) + " ms";
  }}
  lanesOrder.forEach((key, i) => {{
    const y = top + i * rowH;
    const g = el("g", {{ class: "lane", "data-name": names[key] || key }});
    const label = el("text", {{ x: 6, y: y + 17, class: "lane-label" }}, g);
    label.textContent = names[key] || key;
    el("line", {{ x1: left, x2: width - 20, y1: y + rowH - 1, y2: y + rowH - 1, class: "grid" }}, g);
    lanes[key].forEach(e => {{
      if (e.ph === "X") {{
        const w = Math.max(x(e.ts + e.dur) - x(e.ts), 1);
        const r = el("rect", {{ x: x(e.ts), y: y + 4, width: w, height: rowH - 9, rx: 2,
                                fill: colors[e.cat] || "#999", class: "bar", "data-cat": e.cat }}, g);
        const tt = el("title", {{}}, r);
        tt.textContent = e.name + " — " + (e.dur / 1000).toFixed(3) + " ms at " + (e.ts / 1000).toFixed(3) + " ms";
      }} else {{
        const c = el("circle", {{ cx: x(e.ts), cy: y + rowH / 2, r: 3, fill: colors[e.cat] || "#333",
                                  class: "mark", "data-cat": e.cat }}, g);
        el("title", {{}}, c).textContent = e.name + " at " + (e.ts / 1000).toFixed(3) + " ms";
      }}
    }});
  }});
  document.getElementById("chart").appendChild(svg);
  const legend = [["step", "task running"], ["wait-timer", "waiting: timer"], ["wait-io", "waiting: IO"],
                  ["wait-executor", "waiting: executor"], ["wait-task", "waiting: another task"],
                  ["wait-busy", "ready, loop busy"], ["busy", "loop busy"], ["blocked", "loop blocked"],
                  ["thread", "thread job"], ["process", "process job"], ["timer", "timer"], ["io", "IO ready"]];
  document.getElementById("legend").innerHTML = legend.map(([c, t]) =>
    '<span><i style="background:' + colors[c] + '"></i>' + t + '</span>').join("");
  const tasks = lanesOrder.filter(k => (names[k] || "").startsWith("task ")).length;
  document.getElementById("meta").textContent = tasks + " tasks, " + lanesOrder.length + " lanes, " +
    (tmax / 1e6).toFixed(3) + " s recorded";
  document.body.setAttribute("data-rendered", "1");
}})();
</script>
</body></html>
"""


def html_page(trace, title="ferroloop x-ray"):
    data = json.dumps(trace).replace("</", "<\\/")  # never close the script element early
    return _PAGE.format(title=html.escape(title), data=data)
