"""Beyond one machine: the edge detection on a Dask cluster - a local one started and
stopped here, and the same cluster reached by address as `dask://HOST:PORT` - gives the
same images as the process pool. (In a child process: see dask_check.py.)"""

import json
import os
import subprocess
import sys

import pytest

from ferroloop_demo.executors import make_executor_factory

from .demo_helpers import demo_env  # (skips without the demo's requirements)

pytest.importorskip("distributed")


@pytest.mark.timeout(180)
def test_dask_same_images(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "dask_check.py")
    p = subprocess.run(
        [sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=170, env=demo_env()
    )
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    want = report["pool"]["digests"]
    assert len(want) == 3 and report["pool"]["failures"] == 0
    assert report["workers"] == 1 and report["worker_pid_differs"]
    for name in ("dask-local-async", "dask-local-limits", "dask-address"):
        assert report[name]["failures"] == 0, name
        assert report[name]["digests"] == want, name
    assert report["dask-local-async"]["executor"] == "Dask, local cluster (1 worker)"
    assert report["dask-local-async"]["loop"] == "ferroloop._loop.Loop"
    assert report["dask-address"]["executor"].startswith("Dask cluster at tcp://127.0.0.1:")
    assert report["dask-address"]["started_cluster"] is False
    assert report["cluster_closed"]


def test_executor_specs():
    assert make_executor_factory("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert make_executor_factory("process").label == "ProcessPoolExecutor"
    with pytest.raises(ValueError):
        make_executor_factory("ray://x")
