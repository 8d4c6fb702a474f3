"""The demo's image server: the internet, on loopback.

An aiohttp application serving `count` generated photographs (1920x1080 JPEG by default)
at /images/<n>.jpg, n = 1..count, as slowly as a far-away server: each response waits
`latency` seconds before its headers, then sends its body at no more than `bandwidth`
bytes per second per download (0: as fast as loopback goes). Downloading is then IO-bound,
as over the internet: a client waits, it does not compute.

The server can be told to fail some images (`--fail 3,7:flaky`), each in one way:

    error   HTTP 503 every time                 (retried, then reported)
    flaky   HTTP 503 on every other request     (the retry succeeds)
    404     HTTP 404 every time                 (not retried: the image is not there)
    reset   half the body, then the connection drops
    stall   half the body, then nothing         (the client's timeout ends it)

It runs in its own process (`ImageServer` starts it and reads the URL it prints), on
ferroloop by default, so the clients under test share no event loop and no GIL with it.

    python -m ferroloop_demo.server --count 12 --latency 0.3 --bandwidth 60000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import time

FAIL_MODES = ("error", "flaky", "404", "reset", "stall")


def parse_failures(spec: str | None) -> dict[int, str]:
    """'3,7:flaky' -> {3: 'error', 7: 'flaky'}."""
    failures: dict[int, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        num, _, mode = item.partition(":")
        mode = mode or "error"
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown failure mode {mode!r} in {spec!r} (modes: {', '.join(FAIL_MODES)})")
        try:
            failures[int(num)] = mode
        except ValueError:
            raise ValueError(f"--fail {spec!r}: {num!r} is not an image number") from None
    return failures


def format_failures(failures: dict[int, str]) -> str:
    return ",".join(f"{n}:{mode}" for n, mode in sorted(failures.items()))


def generate_images(count: int, size, quality: int) -> dict[int, bytes]:
    """Images 1..count, drawn in parallel on the machine's cores."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from .images import photo_jpeg

    make = partial(photo_jpeg, size=size, quality=quality)
    nums = list(range(1, count + 1))
    workers = min(count, os.cpu_count() or 1)
    if workers <= 1:
        return {n: make(n) for n in nums}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return dict(zip(nums, pool.map(make, nums), strict=True))


def make_app(images: dict[int, bytes], *, latency: float, bandwidth: float, failures: dict[int, str]):
    from aiohttp import web

    requests_seen: dict[int, int] = {}

    async def send_body(request, response, body: bytes, stop_at: int | None = None):
        """Write the body in slices, paced to `bandwidth` bytes/s from the first byte."""
        end = len(body) if stop_at is None else stop_at
        step = max(4096, int(bandwidth / 50)) if bandwidth > 0 else 64 * 1024
        start = time.monotonic()
        sent = 0
        while sent < end:
            piece = body[sent : min(end, sent + step)]
            await response.write(piece)
            sent += len(piece)
            if bandwidth > 0:
                delay = start + sent / bandwidth - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def image(request):
        try:
            num = int(request.match_info["num"])
            body = images[num]
        except (KeyError, ValueError):
            raise web.HTTPNotFound() from None
        seen = requests_seen[num] = requests_seen.get(num, 0) + 1
        mode = failures.get(num)
        if latency > 0:
            await asyncio.sleep(latency)
        if mode == "404":
            raise web.HTTPNotFound(text=f"image {num}: not here (told to fail)")
        if mode == "error" or (mode == "flaky" and seen % 2 == 1):
            raise web.HTTPServiceUnavailable(text=f"image {num}: unavailable (told to fail, request {seen})")
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(body)
        await response.prepare(request)
        if mode in ("reset", "stall"):
            await send_body(request, response, body, stop_at=len(body) // 2)
            if mode == "stall":
                await asyncio.sleep(3600)
            request.transport.close()
            return response
        try:
            await send_body(request, response, body)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-body: its business, not an error
        return response

    async def index(request):
        return web.json_response(
            {
                "images": [f"/images/{n}.jpg" for n in sorted(images)],
                "latency": latency,
                "bandwidth": bandwidth,
                "failures": {str(k): v for k, v in failures.items()},
            }
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/images/{num}.jpg", image)
    return app


async def serve(args, images) -> None:
    from aiohttp import web

    app = make_app(images, latency=args.latency, bandwidth=args.bandwidth, failures=parse_failures(args.fail))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, shutdown_timeout=0.1)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The parent holds our stdin open: when it goes away, so do we.
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    await runner.cleanup()


def build_parser():
    p = argparse.ArgumentParser(prog="python -m ferroloop_demo.server", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--latency", type=float, default=0.3, help="seconds before each response's headers")
    p.add_argument("--bandwidth", type=float, default=60_000, help="bytes/s per download, 0 = unlimited")
    p.add_argument("--fail", default="", help="images to fail: N[:MODE],... modes: " + ", ".join(FAIL_MODES))
    p.add_argument(
        "--loop", choices=("ferroloop", "asyncio"), default="ferroloop", help="the server's event loop"
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the demo's image server listens on loopback only")
    parse_failures(args.fail)
    images = generate_images(args.count, (args.width, args.height), args.quality)
    if args.loop == "ferroloop":
        import ferroloop

        ferroloop.run(serve(args, images))
    else:
        asyncio.run(serve(args, images))
    return 0


def _child_env():
    """The server's process finds this package where this one did, whatever its cwd."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


class ImageServer:
    """Start the image server in a child process; `url` is its base URL.

    with ImageServer(count=12, latency=0.3, bandwidth=60_000) as server:
        urls = server.image_urls()
    """

    def __init__(
        self,
        count=12,
        *,
        latency=0.3,
        bandwidth=60_000,
        fail="",
        size=(1920, 1080),
        quality=95,
        loop="ferroloop",
        start_timeout=120.0,
    ):
        if isinstance(fail, dict):
            fail = format_failures(fail)
        parse_failures(fail)
        self.count, self.latency, self.bandwidth, self.fail = count, latency, bandwidth, fail
        self.size, self.quality, self.loop = size, quality, loop
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None

    def image_urls(self) -> list[str]:
        return [f"{self.url}/images/{n}.jpg" for n in range(1, self.count + 1)]

    def start(self) -> "ImageServer":
        cmd = [
            sys.executable,
            "-m",
            f"{__package__}.server",
            "--count",
            str(self.count),
            "--latency",
            str(self.latency),
            "--bandwidth",
            str(self.bandwidth),
            "--width",
            str(self.size[0]),
            "--height",
            str(self.size[1]),
            "--quality",
            str(self.quality),
            "--loop",
            self.loop,
        ]
        if self.fail:
            cmd += ["--fail", self.fail]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env()
        )
        deadline = time.monotonic() + self.start_timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(
                f"the image server did not start (exit code {self.proc.returncode}, said {line!r})"
            )
        self.url = line.split()[1]
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the server stops when its stdin closes
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
