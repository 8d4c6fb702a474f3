"""Run by test_demo_dask.py in a child process: dask.distributed leaves daemon threads
behind (its offload pool, the scheduler's profiler), and a pytest process with threads
would make later fork()-based tests warn. Prints one JSON line.

    python dask_check.py OUT_DIR
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from ferroloop_demo import pipeline
from ferroloop_demo.executors import DaskFactory, make_executor_factory
from ferroloop_demo.server import ImageServer


def digests(result):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in result.processed]


def main(out: Path) -> None:
    report = {}
    with ImageServer(3, latency=0.01, bandwidth=0, size=(240, 135), start_timeout=60) as server:

        def settings(name):
            return pipeline.Settings(urls=server.image_urls(), out_dir=out / name, timeout=10, backoff=0.05)

        with make_executor_factory("process") as pool:
            ref = pipeline.run_variant("async", "ferroloop", settings("pool"), pool)
        report["pool"] = {"digests": digests(ref), "failures": len(ref.failures)}

        local = make_executor_factory("dask-local")
        assert isinstance(local, DaskFactory)
        local.n_workers = 1  # enough to prove the path; keeps it light
        with local:
            report["workers"] = len(local.client.scheduler_info()["workers"])
            # The work leaves this process: a task runs in the worker's pid.
            report["worker_pid_differs"] = (
                local.client.submit(os.getpid, pure=False).result(timeout=60) != os.getpid()
            )
            for variant in ("async", "limits"):
                r = pipeline.run_variant(variant, "ferroloop", settings(f"dask-local-{variant}"), local)
                report[f"dask-local-{variant}"] = {
                    "digests": digests(r),
                    "failures": len(r.failures),
                    "executor": r.executor,
                    "loop": r.loop_type,
                }
            # --executor dask://HOST:PORT: a client of its own to a cluster it did not start.
            address = local.cluster.scheduler_address
            remote = make_executor_factory("dask://" + address.removeprefix("tcp://"))
            with remote:
                r = pipeline.run_variant("limits", "asyncio", settings("dask-address"), remote)
                report["dask-address"] = {
                    "digests": digests(r),
                    "failures": len(r.failures),
                    "executor": r.executor,
                    "started_cluster": remote.cluster is not None,
                }
            cluster = local.cluster
        report["cluster_closed"] = cluster.status.name == "closed" and local.client is None
    print(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
