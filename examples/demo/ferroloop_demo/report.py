"""The tutorial's report for one run, the comparison table, the chart."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .pipeline import VARIANT_TITLES, RunResult


def _pct(part: float, total: float) -> float:
    return part / total * 100 if total > 0 else 0.0


def tutorial_report(r: RunResult) -> str:
    """The tutorial's three lines (same wording, same format), then the failures."""
    dl, proc, total = r.download_time, r.process_time, r.total_time
    lines = [
        f"\nDownloaded {len(r.downloaded)} images in: {dl:.2f} seconds. {_pct(dl, total):.2f}% of total time",
        f"Processed {len(r.processed)} images in: {proc:.2f} seconds. {_pct(proc, total):.2f}% of total time",
        f"\nTotal execution time: {total:.2f} seconds. {_pct(total, total):.2f}% of total time",
    ]
    if r.failures:
        lines.append(f"\n{len(r.failures)} image(s) failed, the others completed:")
        lines += [f"  {f}" for f in r.failures]
    return "\n".join(lines)


def run_title(r: RunResult) -> str:
    where = "no event loop" if r.loop == "none" else f"on {r.loop}"
    return f"{VARIANT_TITLES[r.variant]} ({where}; edge detection: {r.executor})"


def comparison_table(results: list[RunResult], expected: int) -> str:
    base = next((r for r in results if r.variant == "sequential"), None)
    head = (
        f"{'variant':<32} {'loop':<10} {'edges in':<13} {'images':>7} {'download':>10} {'processing':>11} "
        f"{'total':>9} {'speed-up':>9}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        speed = f"{base.total_time / r.total_time:.1f}x" if base and r.total_time > 0 else "-"
        loop = "-" if r.loop == "none" else r.loop
        rows.append(
            f"{VARIANT_TITLES[r.variant]:<32} {loop:<10} {short_executor(r.executor):<13} "
            f"{len(r.processed):>3}/{expected:<3} "
            f"{r.download_time:>8.2f} s {r.process_time:>9.2f} s {r.total_time:>7.2f} s {speed:>9}"
        )
    return "\n".join(rows)


def short_executor(label: str) -> str:
    for prefix, short in (
        ("ProcessPool", "processes"),
        ("ThreadPool", "thread pool"),
        ("threads", "threads"),
        ("Dask, local", "Dask (local)"),
        ("Dask", "Dask"),
    ):
        if label.startswith(prefix):
            return short
    return "main thread" if label == "this thread" else label[:13]


def headline(results: list[RunResult]):
    """(async+processes run, sequential run): the tutorial's step 3 against its baseline,
    on ferroloop when it ran there. None when either is missing."""
    base = next((r for r in results if r.variant == "sequential"), None)
    order = [("async", "ferroloop"), ("limits", "ferroloop"), ("async", "asyncio"), ("limits", "asyncio")]
    best = next((r for v, lp in order for r in results if r.variant == v and r.loop == lp), None)
    if base is None or best is None or best.total_time <= 0:
        return None
    return best, base


def digests(r: RunResult) -> dict[str, str]:
    return {p.name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in r.processed}


def compare_outputs(results: list[RunResult]) -> tuple[bool, int]:
    """Are the processed images the same bytes in every run? (and how many were compared)"""
    if not results:
        return True, 0
    all_digests = [digests(r) for r in results]
    common = set.intersection(*(set(d) for d in all_digests))
    same = all(len({d[name] for d in all_digests}) == 1 for name in common)
    return same, len(common)


def chart(results: list[RunResult], path: Path, title: str) -> Path:
    """A horizontal bar per run: download time, then processing time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{VARIANT_TITLES[r.variant]}\n{'' if r.loop == 'none' else r.loop}".strip() for r in results]
    dl = [r.download_time for r in results]
    proc = [r.process_time for r in results]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.75 * len(results)), dpi=110)
    y = list(range(len(results)))[::-1]
    ax.barh(y, dl, color="#4c8bd6", label="download (IO-bound)")
    ax.barh(y, proc, left=dl, color="#e8913a", label="edge detection (CPU-bound)")
    for yi, r in zip(y, results, strict=True):
        ax.text(r.total_time, yi, f"  {r.total_time:.1f} s", va="center", fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max([r.total_time for r in results] + [1]) * 1.15)
    ax.set_title(title, fontsize=11)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
