"""The demo's run: start the image server, run the variants, report."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MARKER = ".ferroloop-demo"
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
NEEDED = ("PIL", "numpy", "aiohttp", "httpx", "aiofiles", "rich", "matplotlib")


def missing_dependencies(executor: str = "process") -> list[str]:
    import importlib.util

    names = list(NEEDED) + (["distributed"] if executor.startswith("dask") else [])
    return [n for n in names if importlib.util.find_spec(n) is None]


def prepare_out_dir(out: str | None) -> Path:
    """A new temp dir, or the user's folder: new, empty, or one this demo made before."""
    if out is None:
        path = Path(tempfile.mkdtemp(prefix="ferroloop-demo-"))
    else:
        path = Path(out).expanduser().resolve()
        if path.exists() and any(path.iterdir()) and not (path / MARKER).exists():
            raise SystemExit(f"--out {path}: not empty and not a ferroloop demo folder; choose another")
        path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by ferroloop's demo (examples/demo)\n")
    return path


def _plan(ns) -> list[tuple[str, str]]:
    runs = []
    for variant in ns.variants:
        if variant == "sequential":
            runs.append((variant, "none"))
        else:
            runs += [(variant, loop) for loop in ns.loops]
    return runs


def run(ns) -> int:
    try:
        return _run(ns)
    except KeyboardInterrupt:
        # The runs clean up on the way out (temp files, pools, the server, a local cluster).
        print("\ninterrupted: no half-written files are left behind", file=sys.stderr)
        return 130


def _run(ns) -> int:
    missing = missing_dependencies(ns.executor)
    if missing:
        print(f"The demo needs {', '.join(missing)}: pip install -r {REQUIREMENTS}", file=sys.stderr)
        return 2
    from . import pipeline, report
    from .executors import make_executor_factory
    from .server import ImageServer, parse_failures

    for name in ("count", "retries", "download_limit", "cpu_workers"):
        if getattr(ns, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    try:
        executors = make_executor_factory(ns.executor)
        parse_failures(ns.fail)
    except ValueError as exc:
        raise SystemExit(f"ferroloop demo: {exc}") from None
    progress = sys.stderr.isatty() if ns.progress is None else ns.progress
    out = prepare_out_dir(ns.out)
    runs = _plan(ns)
    width, height = ns.size
    bandwidth = ns.bandwidth * 1000
    print(f"ferroloop demo: the asyncio tutorial's image program ({ns.count} images, {width}x{height} JPEG)")
    print(f"  edge detector: {ns.detector}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    print(f"  output: {out}")

    t0 = time.perf_counter()
    with ImageServer(
        ns.count, latency=ns.latency, bandwidth=bandwidth, fail=ns.fail, size=ns.size, loop=ns.server_loop
    ) as server:
        bw = "unlimited" if bandwidth <= 0 else f"{ns.bandwidth:g} KB/s per download"
        print(
            f"  image server: {server.url} on {ns.server_loop} (started in {time.perf_counter() - t0:.1f} s); "
            f"latency {ns.latency:g} s, {bw}" + (f"; told to fail {ns.fail}" if ns.fail else "")
        )
        if any(v in ("async", "limits") for v, _ in runs):
            t1 = time.perf_counter()
            executors.start()
            print(
                f"  edge detection in the async variants: {executors.label} (ready in {time.perf_counter() - t1:.1f} s)"
            )
        results = []
        try:
            for variant, loop in runs:
                name = variant if loop == "none" else f"{variant}-{loop}"
                run_dir = out / name
                shutil.rmtree(run_dir, ignore_errors=True)
                settings = pipeline.Settings(
                    urls=server.image_urls(),
                    out_dir=run_dir,
                    detector=ns.detector,
                    timeout=ns.timeout,
                    retries=ns.retries,
                    backoff=ns.backoff,
                    download_limit=ns.download_limit,
                    cpu_workers=ns.cpu_workers,
                    progress=progress,
                )
                title = pipeline.VARIANT_TITLES[variant] + ("" if loop == "none" else f" on {loop}")
                print(f"\n=== {title} " + "=" * max(0, 60 - len(title)), flush=True)
                result = pipeline.run_variant(variant, loop, settings, executors)
                results.append(result)
                print(
                    f"edge detection: {result.executor}"
                    + (f"; loop: {result.loop_type}" if result.loop_type else "")
                )
                print(report.tutorial_report(result), flush=True)
        finally:
            executors.close()

    print("\n=== comparison " + "=" * 50)
    print(report.comparison_table(results, ns.count))
    same, n = report.compare_outputs(results)
    if len(results) > 1:
        print(
            f"\nProcessed images identical in all {len(results)} runs: {'yes' if same else 'NO'} "
            f"({n} images compared byte for byte)"
        )
    else:
        print()
    if ns.chart and results:
        path = report.chart(
            results,
            out / "times.png",
            f"{ns.count} images, {width}x{height}; latency {ns.latency:g} s, {bw}; "
            f"{ns.detector} edge detector",
        )
        print(f"Chart: {path}")
    pair = report.headline(results)
    if pair:
        best, base = pair
        print(
            f"{pipeline.VARIANT_TITLES[best.variant]} on {best.loop}: {best.total_time:.2f} s; "
            f"sequential: {base.total_time:.2f} s"
        )
        print(f"async+processes vs sequential: {base.total_time / best.total_time:.1f}x faster")
    return 0 if same else 1
