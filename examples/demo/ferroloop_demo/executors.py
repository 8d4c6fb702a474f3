"""Where the edge detection runs: any `concurrent.futures.Executor`.

    process            a ProcessPoolExecutor per run, as in the tutorial (the default)
    thread             a ThreadPoolExecutor (to see the GIL at work)
    dask://HOST:PORT   a Dask cluster, anywhere: dask.distributed's Client.get_executor()
    dask-local         a Dask cluster started here (one worker process per core), to
                       show the distributed path on one machine

The pipeline hands the executor bytes and gets bytes back, so a cluster's workers need
neither this machine's files nor a shared disk - only the demo's requirements and this
package importable (PYTHONPATH=examples/demo), for the edge detector's module.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

EXECUTOR_HELP = "process (default), thread, dask://HOST:PORT, dask-local"


class ExecutorFactory:
    """Opens an executor for one run's CPU stage. `sized`: it takes max_workers, so the
    limited variant needs no semaphore of its own for the CPU stage."""

    label = "?"
    sized = True

    def start(self) -> "ExecutorFactory":
        return self

    @contextlib.contextmanager
    def open(self, max_workers: int):
        raise NotImplementedError
        yield

    def close(self) -> None:
        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class ProcessPoolFactory(ExecutorFactory):
    """A new ProcessPoolExecutor for each run, created and shut down inside the timed
    processing stage, as the tutorial's `with ProcessPoolExecutor() as executor:`.

    Its workers come from a fork server started once, with the edge detector preloaded:
    forking the demo itself (it has threads: aiofiles', rich's, the loop's executor) is
    what Python 3.12+ warns against, and a spawned worker would pay numpy's and Pillow's
    import on every run."""

    label = "ProcessPoolExecutor"

    def __init__(self):
        self.context = None

    def start(self):
        if self.context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([f"{__package__}.edges"])
                from multiprocessing import forkserver

                forkserver.ensure_running()
            else:  # pragma: no cover (not on Linux/macOS)
                ctx = multiprocessing.get_context("spawn")
            self.context = ctx
        return self

    @contextlib.contextmanager
    def open(self, max_workers):
        self.start()
        with ProcessPoolExecutor(max_workers=max_workers, mp_context=self.context) as executor:
            yield executor


class ThreadPoolFactory(ExecutorFactory):
    label = "ThreadPoolExecutor"

    @contextlib.contextmanager
    def open(self, max_workers):
        with ThreadPoolExecutor(max_workers=max_workers) as executor:
            yield executor


class DaskFactory(ExecutorFactory):
    """A dask.distributed Client, to a cluster at `address` or to a LocalCluster started
    here (`address=None`). The client (and the local cluster) live for the whole demo; each
    run gets `client.get_executor()`. The cluster decides how many tasks run at once, so
    the limited variant adds the tutorial's alternative: a semaphore of CPU workers."""

    sized = False

    def __init__(self, address: str | None = None, n_workers: int | None = None, start_timeout: float = 60):
        self.address = address
        self.n_workers = n_workers or (os.cpu_count() or 1)
        self.start_timeout = start_timeout
        self.cluster = None
        self.client = None

    @property
    def label(self):
        if self.address is None:
            return f"Dask, local cluster ({self.n_workers} worker{'s' if self.n_workers != 1 else ''})"
        return f"Dask cluster at {self.address}"

    def start(self):
        if self.client is not None:
            return self
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise SystemExit(
                "the Dask executor needs dask[distributed] (examples/demo/requirements.txt)"
            ) from exc
        if self.address is None:
            # One single-threaded worker process per core: the detector is pure Python, so
            # threads in a worker would only queue on its GIL.
            self.cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                host="127.0.0.1",
            )
            self.client = Client(self.cluster, timeout=self.start_timeout)
        else:
            self.client = Client(self.address, timeout=self.start_timeout)
        return self

    @contextlib.contextmanager
    def open(self, max_workers):
        self.start()
        # pure=False: every call is a new task, even for bytes seen before.
        executor: Executor = self.client.get_executor(pure=False)
        try:
            yield executor
        finally:
            executor.shutdown(wait=True)

    def close(self):
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def make_executor_factory(spec: str) -> ExecutorFactory:
    spec = (spec or "process").strip()
    if spec == "process":
        return ProcessPoolFactory()
    if spec == "thread":
        return ThreadPoolFactory()
    if spec == "dask-local":
        return DaskFactory(None)
    if spec.startswith("dask://"):
        hostport = spec[len("dask://") :]
        if not hostport:
            raise ValueError("dask://HOST:PORT needs a host and port")
        return DaskFactory(f"tcp://{hostport}")
    raise ValueError(f"unknown executor {spec!r} (choose from {EXECUTOR_HELP})")
