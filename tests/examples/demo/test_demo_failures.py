"""Failure handling as the tutorial teaches it: a failing download does not stop the
others and is reported at the end; what may pass is retried with backoff; every request
has a timeout; nothing half-written is left in the output folder."""

import time

import pytest

from ferroloop_demo import images, pipeline, report
from ferroloop_demo.server import ImageServer

from .demo_helpers import SMALL, leftovers, settings_for

FAILS = "2:error,3:reset,4:flaky,5:404,6:stall"
COUNT = 7
OK = [1, 4, 7]  # 4 fails once and succeeds on its retry
RUNS = [("sequential", "none")] + [
    (v, lp) for v in ("threads", "async", "limits") for lp in ("ferroloop", "asyncio")
]


@pytest.fixture(scope="module")
def failing_server():
    with ImageServer(COUNT, latency=0.01, bandwidth=0, size=SMALL, fail=FAILS, start_timeout=60) as srv:
        yield srv


@pytest.mark.parametrize("variant,loop", RUNS)
def test_failures_reported_and_the_rest_complete(failing_server, process_pool, tmp_path, variant, loop):
    settings = settings_for(failing_server, tmp_path, timeout=0.5, retries=2, backoff=0.05)
    t0 = time.monotonic()
    r = pipeline.run_variant(variant, loop, settings, process_pool)
    elapsed = time.monotonic() - t0

    assert [p.name for p in r.processed] == [f"image_{n}.jpg" for n in OK]
    for n, path in zip(OK, r.downloaded, strict=True):
        assert path.read_bytes() == images.photo_jpeg(n, size=SMALL)
    failed = {f.img_num: f for f in r.failures}
    assert sorted(failed) == [2, 3, 5, 6]
    assert all(f.stage == "download" for f in r.failures)
    assert "HTTP 503" in failed[2].error and failed[2].attempts == 2  # retried, then given up
    assert failed[3].attempts == 2 and "RemoteProtocolError" in failed[3].error  # connection dropped mid-body
    assert "HTTP 404" in failed[5].error and failed[5].attempts == 1  # not retried
    assert "timed out" in failed[6].error and failed[6].attempts == 2  # the per-request timeout
    # Nothing half-written: only complete images, and only those that succeeded.
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in settings.original_dir.iterdir()) == [f"image_{n}.jpg" for n in OK]
    assert sorted(p.name for p in settings.processed_dir.iterdir()) == [f"image_{n}.jpg" for n in OK]
    # Bounded: the stalled image costs two timeouts and a backoff, not an hour.
    assert elapsed < 15

    text = report.tutorial_report(r)
    assert "4 image(s) failed, the others completed:" in text
    assert "image_6.jpg (download) after 2 attempts: timed out" in text


def test_cancelled_download_leaves_no_part_file(tmp_path):
    """Interrupted mid-body (Ctrl-C, a cancelled task): the temp file goes too."""
    import asyncio

    import httpx

    import ferroloop

    with ImageServer(1, latency=0, bandwidth=20_000, size=(640, 360), start_timeout=60) as srv:

        async def main():
            async with httpx.AsyncClient() as client:
                task = asyncio.ensure_future(
                    pipeline.download_single_image(client, srv.image_urls()[0], 1, tmp_path, 30)
                )
                await asyncio.sleep(0.3)
                assert not task.done()
                assert leftovers(tmp_path) != []  # a .part file is being written
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        ferroloop.run(main())
    assert list(tmp_path.iterdir()) == []
