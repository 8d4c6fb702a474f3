"""The tutorial's image program in its four variants.

    sequential   plain synchronous code: one HTTP session, one image after another,
                 then the edge detection one image after another (the tutorial's baseline)
    threads      the same synchronous functions, each download and each detection in
                 `asyncio.to_thread` (step 2: downloads get faster, detection does not)
    async        async HTTP (httpx.AsyncClient) and async files (aiofiles), every download
                 at once; the detection in a `ProcessPoolExecutor` - or any other
                 `concurrent.futures.Executor` (step 3, "async + processes")
    limits       the same with limits: a Semaphore of 4 downloads, and as many detections
                 in flight as the executor has workers (step 4)

As the tutorial teaches it for crawling URLs, one failing image does not stop the others:
`gather(..., return_exceptions=True)`, failures collected and reported at the end. Each
request has a timeout and is retried with exponential backoff when the failure may pass
(a timeout, a dropped connection, HTTP 5xx/429); every file is written to a temporary name
and renamed when complete, so the output folders never hold half an image.

Stage times are measured as the tutorial measures them: all downloads, then all
processing; `total = download + processing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import edges
from .executors import ExecutorFactory
from .progress import Bars

VARIANTS = ("sequential", "threads", "async", "limits")
VARIANT_TITLES = {
    "sequential": "sequential",
    "threads": "threads (to_thread)",
    "async": "async + processes",
    "limits": "async + processes, with limits",
}
DOWNLOAD_LIMIT = 4  # the tutorial's Semaphore(4)
CPU_WORKERS = os.cpu_count() or 1  # the tutorial's max_workers=os.cpu_count()


@dataclass
class Settings:
    """What every variant shares."""

    urls: list[str]
    out_dir: Path  # this run's folder: original/ and processed/ go in it
    detector: str = "tutorial"
    timeout: float = 10.0  # seconds per request attempt, body included
    retries: int = 3  # attempts per image, the first one included
    backoff: float = 0.5  # seconds before the 2nd attempt, doubling after
    download_limit: int = DOWNLOAD_LIMIT
    cpu_workers: int = CPU_WORKERS
    progress: bool = False

    @property
    def original_dir(self) -> Path:
        return self.out_dir / "original"

    @property
    def processed_dir(self) -> Path:
        return self.out_dir / "processed"


@dataclass
class Failure:
    img_num: int
    url: str
    stage: str  # "download" or "process"
    error: str
    attempts: int = 1

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"image_{self.img_num}.jpg ({self.stage}){tries}: {self.error}"


@dataclass
class RunResult:
    variant: str
    loop: str  # "ferroloop", "asyncio" or "none" (sequential)
    executor: str  # where the edge detection ran
    downloaded: list[Path] = field(default_factory=list)
    processed: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    download_time: float = 0.0
    process_time: float = 0.0
    loop_type: str = ""  # the running loop's class, as seen from inside

    @property
    def total_time(self) -> float:
        return self.download_time + self.process_time

    @property
    def name(self) -> str:
        return self.variant if self.loop == "none" else f"{self.variant}-{self.loop}"


class DownloadError(Exception):
    """An image that could not be downloaded, after `attempts` tries."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


# --------------------------------------------------------------------------- helpers


def _http_error_message(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return f"timed out ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def is_retryable(exc: BaseException) -> bool:
    """A failure that may pass: a timeout, a network error, HTTP 5xx or 429."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, (TimeoutError, httpx.TransportError, ConnectionError))


def _with_ts(url: str) -> str:
    """The tutorial adds a timestamp to every URL so no cache answers for the server."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}ts={int(time.time())}"


def _prepare(settings: Settings) -> None:
    settings.original_dir.mkdir(parents=True, exist_ok=True)
    settings.processed_dir.mkdir(parents=True, exist_ok=True)


def _numbered(settings: Settings):
    return list(enumerate(settings.urls, start=1))


def _collect(results, numbered, stage: str, failures: list[Failure]) -> list[Path]:
    """Split gather(return_exceptions=True) results into paths and failures, in order."""
    ok = []
    for (img_num, url), result in zip(numbered, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # KeyboardInterrupt, CancelledError: not ours to keep
            attempts = getattr(result, "attempts", 1)
            failures.append(
                Failure(
                    img_num,
                    url,
                    stage,
                    str(result) if isinstance(result, DownloadError) else _http_error_message(result),
                    attempts,
                )
            )
        else:
            ok.append(result)
    return ok


# --------------------------------------------------------------- synchronous download


def download_single_image_sync(session, url: str, img_num: int, original_dir: Path, timeout: float) -> Path:
    """The tutorial's synchronous download (requests there, httpx's sync API here)."""
    import httpx

    url = _with_ts(url)
    download_path = original_dir / f"image_{img_num}.jpg"
    deadline = time.monotonic() + timeout
    client = session if session is not None else httpx
    with client.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        response.raise_for_status()
        tmp = edges.temp_path_for(download_path)
        try:
            with open(tmp, "wb") as f:
                for chunk in response.iter_bytes(chunk_size=8192):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"download took longer than {timeout:g} s")
                    f.write(chunk)
            os.replace(tmp, download_path)
        except BaseException:
            edges._unlink_quietly(tmp)
            raise
    return download_path


def download_with_retries_sync(session, url, img_num, settings: Settings) -> Path:
    for attempt in range(1, settings.retries + 1):
        try:
            return download_single_image_sync(session, url, img_num, settings.original_dir, settings.timeout)
        except Exception as exc:
            if attempt == settings.retries or not is_retryable(exc):
                raise DownloadError(_http_error_message(exc), attempt) from exc
            time.sleep(settings.backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- async download


@contextlib.asynccontextmanager
async def open_atomic_async(path: Path):
    """aiofiles.open(path, 'wb'), through a temporary name renamed on success."""
    import aiofiles
    import aiofiles.os

    tmp = edges.temp_path_for(path)
    try:
        async with aiofiles.open(tmp, "wb") as f:
            yield f
        await aiofiles.os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # no await here: this must run even when cancelled
        raise


async def download_single_image(client, url: str, img_num: int, original_dir: Path, timeout: float) -> Path:
    """The tutorial's async download: httpx.AsyncClient streaming into aiofiles."""
    url = _with_ts(url)
    download_path = original_dir / f"image_{img_num}.jpg"
    async with asyncio.timeout(timeout):
        async with client.stream("GET", url, follow_redirects=True) as response:
            response.raise_for_status()
            async with open_atomic_async(download_path) as f:
                async for chunk in response.aiter_bytes(chunk_size=8192):
                    await f.write(chunk)
    return download_path


async def download_with_retries(client, url, img_num, settings: Settings, limit=None) -> Path:
    """Retries with exponential backoff; `limit` (a Semaphore) is held per attempt, not
    while backing off, so a failing image does not keep a slot from the others."""
    for attempt in range(1, settings.retries + 1):
        try:
            async with limit or contextlib.nullcontext():
                return await download_single_image(
                    client, url, img_num, settings.original_dir, settings.timeout
                )
        except Exception as exc:
            if attempt == settings.retries or not is_retryable(exc):
                raise DownloadError(_http_error_message(exc), attempt) from exc
            await asyncio.sleep(settings.backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


# -------------------------------------------------------------------------- variants


def run_sequential(settings: Settings) -> RunResult:
    import httpx

    _prepare(settings)
    result = RunResult("sequential", "none", "this thread")
    numbered = _numbered(settings)
    with Bars(settings.progress, len(numbered), "sequential") as bars:
        start = time.perf_counter()
        with httpx.Client() as session:
            outcomes = []
            for img_num, url in numbered:
                try:
                    outcomes.append(download_with_retries_sync(session, url, img_num, settings))
                except Exception as exc:
                    outcomes.append(exc)
                bars.downloaded()
        result.downloaded = _collect(outcomes, numbered, "download", result.failures)
        proc_start = time.perf_counter()
        bars.start_processing(len(result.downloaded))
        outcomes = []
        for path in result.downloaded:
            try:
                outcomes.append(
                    edges.process_single_image(path, settings.processed_dir / path.name, settings.detector)
                )
            except Exception as exc:
                outcomes.append(exc)
            bars.processed()
        result.processed = _collect(
            outcomes, _numbered_paths(result.downloaded, settings), "process", result.failures
        )
        finished = time.perf_counter()
    result.download_time = proc_start - start
    result.process_time = finished - proc_start
    return result


def _numbered_paths(paths: list[Path], settings: Settings):
    by_name = {f"image_{n}.jpg": (n, url) for n, url in _numbered(settings)}
    return [by_name[p.name] for p in paths]


async def run_threads(settings: Settings) -> RunResult:
    _prepare(settings)
    result = RunResult("threads", "", "threads (to_thread)", loop_type=_loop_type())
    numbered = _numbered(settings)
    with Bars(settings.progress, len(numbered), "threads") as bars:
        start = time.perf_counter()

        async def download(img_num, url):
            try:
                # No shared session: the tutorial drops it, it might not be thread-safe.
                return await asyncio.to_thread(download_with_retries_sync, None, url, img_num, settings)
            finally:
                bars.downloaded()

        outcomes = await asyncio.gather(*(download(n, u) for n, u in numbered), return_exceptions=True)
        result.downloaded = _collect(outcomes, numbered, "download", result.failures)
        proc_start = time.perf_counter()
        bars.start_processing(len(result.downloaded))

        async def process(path):
            try:
                return await asyncio.to_thread(
                    edges.process_single_image, path, settings.processed_dir / path.name, settings.detector
                )
            finally:
                bars.processed()

        outcomes = await asyncio.gather(*(process(p) for p in result.downloaded), return_exceptions=True)
        result.processed = _collect(
            outcomes, _numbered_paths(result.downloaded, settings), "process", result.failures
        )
        finished = time.perf_counter()
    result.download_time = proc_start - start
    result.process_time = finished - proc_start
    return result


async def _download_all(settings: Settings, bars: Bars, limit) -> list:
    import httpx

    numbered = _numbered(settings)
    # No pool timeout: with many images, waiting for a free connection is not a failure.
    timeout = httpx.Timeout(settings.timeout, pool=None)
    limits = httpx.Limits(max_connections=None if limit is None else settings.download_limit)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def download(img_num, url):
            try:
                return await download_with_retries(client, url, img_num, settings, limit)
            finally:
                bars.downloaded()

        return await asyncio.gather(*(download(n, u) for n, u in numbered), return_exceptions=True)


async def process_one_in_executor(executor, path: Path, save_path: Path, detector: str) -> Path:
    """Read the original (aiofiles), detect its edges in the executor (bytes in, bytes
    out, so the executor may be on another machine), write the result atomically."""
    import aiofiles

    loop = asyncio.get_running_loop()
    async with aiofiles.open(path, "rb") as f:
        jpeg = await f.read()
    fmt = edges._format_for(save_path)
    data = await loop.run_in_executor(executor, edges.process_image_bytes, jpeg, detector, fmt)
    async with open_atomic_async(save_path) as f:
        await f.write(data)
    return save_path


async def _process_all(paths: list[Path], settings: Settings, bars: Bars, executor, limit) -> list:
    async def process(path):
        try:
            async with limit or contextlib.nullcontext():
                return await process_one_in_executor(
                    executor, path, settings.processed_dir / path.name, settings.detector
                )
        finally:
            bars.processed()

    return await asyncio.gather(*(process(p) for p in paths), return_exceptions=True)


async def run_async(settings: Settings, executors: ExecutorFactory, *, limits: bool = False) -> RunResult:
    _prepare(settings)
    variant = "limits" if limits else "async"
    result = RunResult(variant, "", executors.label, loop_type=_loop_type())
    numbered = _numbered(settings)
    with Bars(settings.progress, len(numbered), variant) as bars:
        start = time.perf_counter()
        download_limit = asyncio.Semaphore(settings.download_limit) if limits else None
        outcomes = await _download_all(settings, bars, download_limit)
        result.downloaded = _collect(outcomes, numbered, "download", result.failures)
        proc_start = time.perf_counter()
        bars.start_processing(len(result.downloaded))
        # The tutorial's pool: ProcessPoolExecutor() in step 3, max_workers=os.cpu_count()
        # in step 4 (the same number here); an executor we do not size gets the
        # tutorial's alternative, a semaphore of CPU_WORKERS, in the limited variant.
        with executors.open(max_workers=settings.cpu_workers) as executor:
            cpu_limit = asyncio.Semaphore(settings.cpu_workers) if limits and not executors.sized else None
            outcomes = await _process_all(result.downloaded, settings, bars, executor, cpu_limit)
        result.processed = _collect(
            outcomes, _numbered_paths(result.downloaded, settings), "process", result.failures
        )
        finished = time.perf_counter()
    result.download_time = proc_start - start
    result.process_time = finished - proc_start
    return result


def _loop_type() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


# ------------------------------------------------------------------------ loops, runs

LOOPS = ("ferroloop", "asyncio")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop
    if name == "asyncio":
        return asyncio.SelectorEventLoop  # the stock loop asyncio.run() makes on Unix
    raise ValueError(f"unknown loop {name!r} (choose from {', '.join(LOOPS)})")


def run_variant(variant: str, loop: str, settings: Settings, executors: ExecutorFactory) -> RunResult:
    """One variant on one loop (the sequential one has no loop: it is plain code)."""
    if variant == "sequential":
        return run_sequential(settings)
    if variant == "threads":
        coro = run_threads(settings)
    elif variant in ("async", "limits"):
        coro = run_async(settings, executors, limits=(variant == "limits"))
    else:
        raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(coro)
    result.loop = loop
    return result
