"""Beyond one machine: the edge detection on a Dask cluster (a local one, started and
stopped here) gives the same images as the process pool."""

import pytest

from .demo_helpers import settings_for
from ferroloop.demo import pipeline
from ferroloop.demo.executors import DaskFactory, make_executor_factory

pytest.importorskip("distributed")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("variant", ["async", "limits"])
def test_dask_local_same_images(server, process_pool, tmp_path, variant, dask_local):
    reference = pipeline.run_variant(variant, "ferroloop", settings_for(server, tmp_path / "pool"), process_pool)
    r = pipeline.run_variant(variant, "ferroloop", settings_for(server, tmp_path / "dask"), dask_local)
    assert r.failures == [] and reference.failures == []
    assert r.executor.startswith("Dask, local cluster")
    assert [p.name for p in r.processed] == [p.name for p in reference.processed]
    assert [p.read_bytes() for p in r.processed] == [p.read_bytes() for p in reference.processed]


@pytest.mark.timeout(120)
def test_dask_address_same_images(server, process_pool, tmp_path, dask_local):
    """--executor dask://HOST:PORT: a client of its own, to a cluster it did not start
    (here the local one's scheduler, as another machine's would be)."""
    address = dask_local.cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    remote = make_executor_factory("dask://" + address[len("tcp://"):])
    with remote:
        assert remote.cluster is None and remote.label == f"Dask cluster at {address}"
        r = pipeline.run_variant("limits", "ferroloop", settings_for(server, tmp_path / "remote"), remote)
    reference = pipeline.run_variant("limits", "asyncio", settings_for(server, tmp_path / "pool"), process_pool)
    assert r.failures == []
    assert [p.read_bytes() for p in r.processed] == [p.read_bytes() for p in reference.processed]
    assert len(r.processed) == server.count


@pytest.fixture(scope="module")
def dask_local():
    factory = make_executor_factory("dask-local")
    assert isinstance(factory, DaskFactory)
    factory.n_workers = 1                 # enough to prove the path; keeps the test light
    with factory:
        workers = factory.client.scheduler_info()["workers"]
        assert len(workers) == 1
        # The work really leaves this process: the task runs in the worker's pid.
        pid = factory.client.submit(_pid, pure=False).result(timeout=60)
        import os

        assert pid != os.getpid()
        cluster = factory.cluster
        yield factory
    assert factory.client is None
    assert cluster.status.name == "closed"


def _pid():
    import os

    return os.getpid()


def test_executor_specs():
    assert make_executor_factory("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert make_executor_factory("process").label == "ProcessPoolExecutor"
    with pytest.raises(ValueError):
        make_executor_factory("ray://x")
