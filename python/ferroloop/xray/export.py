"""Exports of a recording: the Chrome trace-event format (Perfetto, chrome://tracing) and
a self-contained HTML page that draws the same timeline — one lane per task, the loop
thread's busy time, executor threads and processes — with no network access needed."""

import html
import json
import re

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
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<style>
 body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
 h1 { font-size: 18px; margin: 0 0 4px; }
 #meta { color: #666; margin-bottom: 10px; }
 #controls { margin-bottom: 8px; }
 #controls input, #controls button, #controls label { margin-right: 8px; font: inherit; }
 #legend span { display: inline-block; margin-right: 14px; }
 #legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }
 svg { background: #fff; border: 1px solid #ddd; }
 .lane-label { font-size: 12px; fill: #333; }
 .group .lane-label { font-weight: bold; cursor: pointer; }
 .axis { font-size: 11px; fill: #777; }
 .grid { stroke: #eee; }
 .bar:hover { stroke: #000; stroke-width: 1; }
</style></head>
<body>
<h1>@TITLE@</h1>
<div id="meta"></div>
<div id="controls">
 <input id="filter" type="search" placeholder="filter lanes (name or coroutine)" size="32">
 <label><input id="group" type="checkbox"> group tasks by coroutine</label>
 <button id="zoom-in">zoom in</button><button id="zoom-out">zoom out</button><button id="zoom-reset">whole run</button>
 <span id="range"></span>
</div>
<div id="legend"></div>
<div id="chart"></div>
<script id="trace" type="application/json">@DATA@</script>
<script>
(function () {
  // State lives in the URL's hash too (#filter=..&group=0|1&zoom=START-END in ms), so a
  // view can be linked, and checked by a headless browser.
  const trace = JSON.parse(document.getElementById("trace").textContent);
  const ev = trace.traceEvents;
  const names = {}, coros = {};
  ev.filter(e => e.ph === "M" && e.name === "thread_name").forEach(e => names[e.pid + ":" + e.tid] = e.args.name);
  ev.filter(e => e.ph === "i" && e.cat === "task" && e.name === "created").forEach(e => coros[e.pid + ":" + e.tid] = e.args.coro);
  const colors = { busy: "#4e79a7", blocked: "#e15759", step: "#59a14f", wait: "#d9d9d9",
                   "wait-timer": "#f3e3a1", "wait-io": "#bfe3df", "wait-executor": "#f9cfa0",
                   "wait-task": "#d6d6d6", "wait-busy": "#f4b6b7",
                   thread: "#f28e2b", process: "#b07aa1", other: "#9c755f", timer: "#edc948", io: "#76b7b2", task: "#333" };
  const lanesOrder = [], lanes = {};
  ev.filter(e => e.ph === "X" || e.ph === "i").forEach(e => {
    const key = e.pid + ":" + e.tid;
    if (!lanes[key]) { lanes[key] = []; lanesOrder.push(key); }
    lanes[key].push(e);
  });
  lanesOrder.sort((a, b) => {
    const [pa, ta] = a.split(":").map(Number), [pb, tb] = b.split(":").map(Number);
    return pa - pb || ta - tb;
  });
  let tmax = 0;
  ev.forEach(e => { if (e.ts !== undefined) tmax = Math.max(tmax, e.ts + (e.dur || 0)); });
  tmax = Math.max(tmax, 1);
  const taskLanes = lanesOrder.filter(k => (names[k] || "").startsWith("task "));
  const hash = new URLSearchParams(location.hash.slice(1));
  const state = { filter: hash.get("filter") || "", group: hash.has("group") ? hash.get("group") === "1" : taskLanes.length > 30,
                  t0: 0, t1: tmax, open: new Set() };
  if (hash.get("zoom")) {
    const [a, b] = hash.get("zoom").split("-").map(Number);
    if (b > a) { state.t0 = a * 1000; state.t1 = b * 1000; }
  }
  const NS = "http://www.w3.org/2000/svg";
  // merged [start, end) of a set of events' bars: what a group lane draws
  function union(list) {
    const xs = list.filter(e => e.ph === "X").map(e => [e.ts, e.ts + e.dur, e.cat]).sort((a, b) => a[0] - b[0]);
    const out = [];
    xs.forEach(([a, b, c]) => {
      const last = out[out.length - 1];
      if (last && a <= last[1] && (last[2] === c)) { last[1] = Math.max(last[1], b); last[3]++; }
      else out.push([a, b, c, 1]);
    });
    return out;
  }
  function rows() {
    const f = state.filter.toLowerCase();
    const match = k => !f || (names[k] || k).toLowerCase().includes(f) || (coros[k] || "").toLowerCase().includes(f);
    const out = [];
    const groups = {};
    lanesOrder.forEach(k => {
      const isTask = (names[k] || "").startsWith("task ");
      if (!match(k) && (isTask || f)) return;
      if (isTask && state.group) {
        const g = coros[k] || "?";
        if (!groups[g]) { groups[g] = []; out.push({ group: g, members: groups[g] }); }
        groups[g].push(k);
      } else out.push({ key: k });
    });
    const flat = [];
    out.forEach(r => {
      if (r.group === undefined) { flat.push(r); return; }
      flat.push(r);
      if (state.open.has(r.group)) r.members.forEach(k => flat.push({ key: k, member: true }));
    });
    return flat;
  }
  function draw() {
    const list = rows();
    const left = 230, width = Math.max(900, window.innerWidth - 60), plot = width - left - 20, rowH = 26, top = 28;
    const height = top + list.length * rowH + 10, span = state.t1 - state.t0;
    const x = t => left + ((t - state.t0) / span) * plot;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("id", "timeline");
    svg.setAttribute("data-zoom", (state.t0 / 1000) + "-" + (state.t1 / 1000));
    const el = (tag, attrs, parent) => { const n = document.createElementNS(NS, tag);
      for (const k in attrs) n.setAttribute(k, attrs[k]); (parent || svg).appendChild(n); return n; };
    const clip = el("clipPath", { id: "plot" });
    el("rect", { x: left, y: 0, width: plot, height: height }, clip);
    for (let i = 0; i <= 10; i++) {
      const t = state.t0 + span * i / 10, xx = x(t);
      el("line", { x1: xx, x2: xx, y1: top - 6, y2: height, class: "grid" });
      const lab = el("text", { x: xx, y: 14, class: "axis", "text-anchor": "middle" });
      lab.textContent = (t / 1000).toFixed(span / 1000 < 10 ? 2 : span / 1000 < 100 ? 1 : 0) + " ms";
    }
    const visible = e => e.ts + (e.dur || 0) >= state.t0 && e.ts <= state.t1;
    list.forEach((r, i) => {
      const y = top + i * rowH;
      let g;
      if (r.group !== undefined) {
        g = el("g", { class: "lane group", "data-name": r.group, "data-count": r.members.length });
        const label = el("text", { x: 6, y: y + 17, class: "lane-label" }, g);
        label.textContent = (state.open.has(r.group) ? "▾ " : "▸ ") + r.group + " ×" + r.members.length;
        label.addEventListener("click", () => { state.open.has(r.group) ? state.open.delete(r.group) : state.open.add(r.group); draw(); });
        const bars = union([].concat(...r.members.map(k => lanes[k]))).filter(([a, b]) => b >= state.t0 && a <= state.t1);
        bars.forEach(([a, b, c, n]) => {
          const rect = el("rect", { x: x(a), y: y + 4, width: Math.max(x(b) - x(a), 1), height: rowH - 9, rx: 2,
                                    fill: colors[c] || "#999", class: "bar", "data-cat": c, "clip-path": "url(#plot)" }, g);
          el("title", {}, rect).textContent = n + " × " + c + " — " + ((b - a) / 1000).toFixed(3) + " ms at " + (a / 1000).toFixed(3) + " ms";
        });
      } else {
        const key = r.key;
        g = el("g", { class: "lane", "data-name": names[key] || key });
        const label = el("text", { x: r.member ? 18 : 6, y: y + 17, class: "lane-label" }, g);
        label.textContent = names[key] || key;
        lanes[key].filter(visible).forEach(e => {
          if (e.ph === "X") {
            const w = Math.max(x(e.ts + e.dur) - x(e.ts), 1);
            const rect = el("rect", { x: x(e.ts), y: y + 4, width: w, height: rowH - 9, rx: 2,
                                      fill: colors[e.cat] || "#999", class: "bar", "data-cat": e.cat, "clip-path": "url(#plot)" }, g);
            el("title", {}, rect).textContent = e.name + " — " + (e.dur / 1000).toFixed(3) + " ms at " + (e.ts / 1000).toFixed(3) + " ms";
          } else {
            const c = el("circle", { cx: x(e.ts), cy: y + rowH / 2, r: 3, fill: colors[e.cat] || "#333",
                                     class: "mark", "data-cat": e.cat }, g);
            el("title", {}, c).textContent = e.name + " at " + (e.ts / 1000).toFixed(3) + " ms";
          }
        });
      }
      el("line", { x1: left, x2: width - 20, y1: y + rowH - 1, y2: y + rowH - 1, class: "grid" }, g);
    });
    // drag across the plot to zoom into that stretch
    let dragFrom = null;
    svg.addEventListener("mousedown", e => { dragFrom = e.offsetX; });
    svg.addEventListener("mouseup", e => {
      if (dragFrom === null) return;
      const a = Math.min(dragFrom, e.offsetX), b = Math.max(dragFrom, e.offsetX); dragFrom = null;
      if (b - a < 5 || a < left) return;
      const t = px => state.t0 + (px - left) / plot * span;
      state.t0 = Math.max(0, t(a)); state.t1 = Math.min(tmax, t(b)); draw();
    });
    const chart = document.getElementById("chart");
    chart.innerHTML = ""; chart.appendChild(svg);
    document.getElementById("range").textContent = (state.t0 / 1000).toFixed(2) + "–" + (state.t1 / 1000).toFixed(2) + " ms";
    const shown = list.length;
    document.getElementById("meta").textContent = taskLanes.length + " tasks, " + lanesOrder.length + " lanes (" +
      shown + " rows shown), " + (tmax / 1e6).toFixed(3) + " s recorded";
    const h = new URLSearchParams();
    if (state.filter) h.set("filter", state.filter);
    h.set("group", state.group ? "1" : "0");
    if (state.t0 > 0 || state.t1 < tmax) h.set("zoom", (state.t0 / 1000).toFixed(3) + "-" + (state.t1 / 1000).toFixed(3));
    history.replaceState(null, "", "#" + h.toString());
  }
  const zoom = f => { const mid = (state.t0 + state.t1) / 2, half = (state.t1 - state.t0) * f / 2;
    state.t0 = Math.max(0, mid - half); state.t1 = Math.min(tmax, mid + half); draw(); };
  document.getElementById("zoom-in").onclick = () => zoom(0.5);
  document.getElementById("zoom-out").onclick = () => zoom(2);
  document.getElementById("zoom-reset").onclick = () => { state.t0 = 0; state.t1 = tmax; draw(); };
  const filter = document.getElementById("filter"), group = document.getElementById("group");
  filter.value = state.filter; group.checked = state.group;
  filter.oninput = () => { state.filter = filter.value; draw(); };
  group.onchange = () => { state.group = group.checked; draw(); };
  const legend = [["step", "task running"], ["wait-timer", "waiting: timer"], ["wait-io", "waiting: IO"],
                  ["wait-executor", "waiting: executor"], ["wait-task", "waiting: another task"],
                  ["wait-busy", "ready, loop busy"], ["busy", "loop busy"], ["blocked", "loop blocked"],
                  ["thread", "thread job"], ["process", "process job"], ["timer", "timer"], ["io", "IO ready"]];
  document.getElementById("legend").innerHTML = legend.map(([c, t]) =>
    '<span><i style="background:' + colors[c] + '"></i>' + t + '</span>').join("");
  draw();
  document.body.setAttribute("data-rendered", "1");
})();
</script>
</body></html>
"""


def html_page(trace, title="ferroloop x-ray"):
    data = json.dumps(trace).replace("</", "<\\/")  # never close the script element early
    parts = {"TITLE": html.escape(title), "DATA": data}
    return re.sub("@(TITLE|DATA)@", lambda m: parts[m.group(1)], _PAGE)  # one pass: data may hold "@TITLE@"
