"""Turns a race's results into the console summary, a Markdown page and a PNG chart."""

from .runner import summarize, verdict


def _fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def _fmt_us(x):
    us = x * 1e6
    return f"{us:.3f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def _short(err, n=70):
    err = err.replace("|", "/").replace("\n", " ")
    return err if len(err) <= n else err[: n - 1] + "…"


def _unit(meta, bench):
    if bench in meta.get("units", {}):
        return meta["units"][bench]
    return "request" if meta["net"][bench]["client"] == "wrk" else "round trip"


def summary_table(results):
    """Ratios to the baseline: throughput × (higher is better) and CPU/op × (lower is better)."""
    meta = results["meta"]
    summ = summarize(results)
    base = meta.get("baseline", "uvloop")
    labels = meta["labels"]
    others = [lb for lb in labels if lb != base]
    has_ir = bool(results.get("callgrind"))
    head = ["benchmark", f"{base} (ops/s · CPU µs/op)"] + [f"{lb} (speed × · CPU ×)" for lb in others]
    if has_ir:
        head.append("instructions/op (callgrind)")
    if "ferroloop" in labels:
        head.append("ferroloop vs. the bar")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bench in meta["benches"]:
        b = summ[(bench, base)]
        row = [f"`{bench}`"]
        row.append(
            f"{_fmt_rate(b['ops_per_sec'])} · {_fmt_us(b['cpu_per_op'])}"
            if "ops_per_sec" in b
            else "failed"
            if b["failures"]
            else "—"
        )
        for lb in others:
            s = summ[(bench, lb)]
            if "speed_vs_base" in s:
                cell = f"{s['speed_vs_base']:.2f}× · {s['cpu_vs_base']:.2f}×"
            elif "ops_per_sec" in s:
                cell = f"{_fmt_rate(s['ops_per_sec'])} · {_fmt_us(s['cpu_per_op'])}"
            else:
                cell = "failed" if s["failures"] else "—"
            if s["failures"] and "ops_per_sec" in s:
                cell += f" ({s['n'] - s['n_ok']} failed)"
            row.append(cell)
        if has_ir:
            parts = []
            for lb in labels:
                ir = summ[(bench, lb)].get("ir_per_op")
                if ir:
                    parts.append(f"{lb} {ir:,.0f}")
            row.append(", ".join(parts) or "—")
        if "ferroloop" in labels:
            row.append(_short(verdict(summ, meta, bench), 200))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def detail_table(results):
    meta = results["meta"]
    summ = summarize(results)
    has_lat = any(b in meta["net"] for b in meta["benches"])
    head = ["benchmark", "loop", "ops/s median", "min–max", "CPU µs/op median", "min–max"]
    if has_lat:
        head.append("latency p50 / p99 µs")
    head.append("runs ok")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bench in meta["benches"]:
        for lb in meta["labels"]:
            s = summ[(bench, lb)]
            row = [f"`{bench}`", lb]
            if "ops_per_sec" in s:
                row += [
                    _fmt_rate(s["ops_per_sec"]),
                    f"{_fmt_rate(s['ops_per_sec_min'])}–{_fmt_rate(s['ops_per_sec_max'])}",
                    _fmt_us(s["cpu_per_op"]),
                    f"{_fmt_us(s['cpu_per_op_min'])}–{_fmt_us(s['cpu_per_op_max'])}",
                ]
                if has_lat:
                    row.append(
                        f"{s['p50_us']:.0f} / {s['p99_us']:.0f}" if s.get("p50_us") is not None else ""
                    )
            else:
                why = _short(s["failures"][0], 110) if s["failures"] else "not run"
                row += [f"**failed**: {why}", "", "", ""] + ([""] if has_lat else [])
            row.append(f"{s['n_ok']}/{s['n']}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def failures_list(results):
    summ = summarize(results)
    out = []
    for (bench, lb), s in summ.items():
        for f in s["failures"]:
            out.append((lb, bench, f))
    for c in results.get("callgrind", []):
        if not c.get("ok"):
            out.append((c["loop"], c["bench"], f"[callgrind] {c['error']}"))
    by_loop = {}
    for lb, bench, f in out:
        by_loop.setdefault((lb, _short(f, 200)), []).append(bench)
    return [
        f"- **{lb}** on {', '.join('`' + b + '`' for b in benches)}: {f}"
        for (lb, f), benches in by_loop.items()
    ]


def meta_lines(results):
    m = results["meta"]
    versions = {}
    for r in results["runs"]:
        if r.get("ok") and r.get("version"):
            versions.setdefault(r["loop"], r["version"])
    return (
        [
            f"- date: {m['date']}; machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, {m['libc']}",
            f"- CPython {m['python']}; loops: "
            + ", ".join(f"{lb} {versions.get(lb, '(did not run)')}" for lb in m["labels"])
            + f"; ferroloop commit {m['ferroloop_commit']}",
            f"- {m['repeat']} repeat(s) per (benchmark, loop), each in a fresh process, loop order rotated every repeat; "
            f"network runs {m['duration']} s each; pinned: {'server/benchmark on core 0, client on core 1' if m['pinned'] else 'no'}",
            "- micro sizes: " + ", ".join(f"{b} {n:,}" for b, n in m["sizes"].items()),
        ]
        + (
            [
                f"- load average (1/5/15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']} "
                f"({m['cores']} cores; the machine is shared)"
            ]
            if m.get("loadavg_start")
            else []
        )
        + ([f"- command: `{m['command']}` ({m.get('elapsed_s', '?')} s)"] if m.get("command") else [])
    )


def markdown(results, chart_path=None, intro=None):
    parts = [intro or "# Benchmark results", "", *meta_lines(results), ""]
    parts += [
        "### Ratios to uvloop",
        "",
        "Each cell: median throughput ÷ uvloop's (higher is better) · median CPU time per "
        "operation ÷ uvloop's (lower is better). The uvloop column gives its absolute "
        "figures. CPU time is the loop process's (all its threads, user + system).",
        "",
        summary_table(results),
        "",
    ]
    if chart_path:
        parts += [f"![benchmark chart]({chart_path})", ""]
    parts += ["### All figures", "", detail_table(results), ""]
    fails = failures_list(results)
    if fails:
        parts += ["### Failures", "", *fails, ""]
    return "\n".join(parts)


def chart(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or the 'bench' extra): no chart"
    meta = results["meta"]
    summ = summarize(results)
    base = meta.get("baseline", "uvloop")
    benches = meta["benches"]
    labels = meta["labels"]
    colors = {
        "ferroloop": "#d9480f",
        "uvloop": "#1c7ed6",
        "rloop": "#2b8a3e",
        "rsloop": "#ae3ec9",
        "asyncio": "#868e96",
    }
    fig, axes = plt.subplots(
        1, 2, figsize=(15, 0.42 * len(benches) * max(1, len(labels) / 4) + 2.2), sharey=True
    )
    labels = [lb for lb in labels if lb != base]  # the baseline is the 1× line itself
    height = 0.8 / max(1, len(labels))
    for ax, key, title in (
        (axes[0], "speed_vs_base", f"throughput ÷ {base} (higher is better)"),
        (axes[1], "cpu_vs_base", f"CPU time per op ÷ {base} (lower is better)"),
    ):
        for i, lb in enumerate(labels):
            ys, xs = [], []
            for j, bench in enumerate(benches):
                v = summ[(bench, lb)].get(key)
                if v:
                    ys.append(j + (i - (len(labels) - 1) / 2) * height)
                    xs.append(v)
            # Bars grow from 1 (= the baseline) to the ratio, left for less, right for more.
            ax.barh(ys, [x - 1 for x in xs], height=height, color=colors.get(lb), label=lb, left=1)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(title)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(range(len(benches)))
    axes[0].set_yticklabels(benches)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right", fontsize="small")
    fig.suptitle(
        f"ferroloop benchmark race — medians of {meta['repeat']} interleaved runs "
        f"({meta['date']}); {base} = 1×; no bar = loop failed",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def console(results):
    return summary_table(results)
