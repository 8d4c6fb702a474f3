"""The demo's command-line options. Argparse only: `--help` and a bad option answer before
anything heavy loads."""

from __future__ import annotations

import argparse
import os

DEFAULT_VARIANTS = "sequential,async,limits"
ALL_VARIANTS = ("sequential", "threads", "async", "limits")


def _csv(choices):
    def parse(text):
        items = list(choices) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} or all (got {text!r})")
        return list(dict.fromkeys(items))

    return parse


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 2 or h < 2:
        raise argparse.ArgumentTypeError("an image needs at least 2x2 pixels")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The asyncio tutorial's real-world program - download images, detect their edges - "
        "sequential, with threads, async + processes, and with limits, on ferroloop and on "
        "stock asyncio, from a local image server that is as slow as the internet."
    )
    g = p.add_argument_group("the images and the server")
    g.add_argument("--count", type=int, default=12, help="how many images (default 12, as the tutorial)")
    g.add_argument(
        "--size", type=_size, default=(1920, 1080), metavar="WxH", help="image size (default 1920x1080)"
    )
    g.add_argument(
        "--latency",
        type=float,
        default=0.3,
        metavar="S",
        help="seconds the server waits before each response (default 0.3)",
    )
    g.add_argument(
        "--bandwidth",
        type=float,
        default=60,
        metavar="KB/S",
        help="bytes per second per download, in thousands (default 60; 0 = unlimited)",
    )
    g.add_argument(
        "--fail",
        default="",
        metavar="N[:MODE],...",
        help="images the server fails: modes error (503, default), flaky (every other "
        "request), 404, reset (connection drops mid-body), stall (client timeout)",
    )
    g.add_argument(
        "--server-loop",
        choices=("ferroloop", "asyncio"),
        default="ferroloop",
        help="the image server's event loop (default ferroloop)",
    )
    g = p.add_argument_group("what runs")
    g.add_argument(
        "--variants",
        type=_csv(ALL_VARIANTS),
        default=_csv(ALL_VARIANTS)(DEFAULT_VARIANTS),
        metavar="LIST",
        help=f"of {', '.join(ALL_VARIANTS)}, or all (default {DEFAULT_VARIANTS})",
    )
    g.add_argument(
        "--loops",
        type=_csv(("ferroloop", "asyncio")),
        default=["ferroloop", "asyncio"],
        metavar="LIST",
        help="event loops for the async variants (default ferroloop,asyncio)",
    )
    g.add_argument(
        "--executor",
        default="process",
        metavar="SPEC",
        help="where the edge detection runs in the async variants: process (default), "
        "thread, dask://HOST:PORT, dask-local (a Dask cluster started here)",
    )
    g.add_argument(
        "--detector",
        choices=("tutorial", "vectorised"),
        default="tutorial",
        help="the tutorial's pure-Python edge detector (default) or its numpy twin",
    )
    g.add_argument(
        "--download-limit",
        type=int,
        default=4,
        metavar="N",
        help="downloads at once in the limited variant (default 4)",
    )
    g.add_argument(
        "--cpu-workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help=f"edge detections at once: the pool's max_workers (default os.cpu_count() = {os.cpu_count()})",
    )
    g = p.add_argument_group("failures")
    g.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per request attempt (default 10)"
    )
    g.add_argument("--retries", type=int, default=3, metavar="N", help="attempts per image (default 3)")
    g.add_argument(
        "--backoff",
        type=float,
        default=0.5,
        metavar="S",
        help="wait before the second attempt, doubling after (default 0.5)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="where the images and the chart go (default: a new temp dir)")
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    g.add_argument(
        "--chart", action=argparse.BooleanOptionalAction, default=True, help="write times.png (default yes)"
    )
