"""The four variants produce identical processed images, on ferroloop and on stock asyncio,
and the same images as the tutorial's detector run directly on what the server serves."""

import io

import pytest
from PIL import Image

from ferroloop_demo import edges, images, pipeline, report

from .demo_helpers import SMALL, leftovers, settings_for

RUNS = [("sequential", "none")] + [
    (v, lp) for v in ("threads", "async", "limits") for lp in ("ferroloop", "asyncio")
]


@pytest.fixture(scope="module")
def all_runs(server, process_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    results = {}
    for variant, loop in RUNS:
        settings = settings_for(server, out / f"{variant}-{loop}")
        results[variant, loop] = pipeline.run_variant(variant, loop, settings, process_pool)
    return out, results


def expected_output(num: int) -> bytes:
    """The tutorial's detector, applied here to image `num` as the server generates it."""
    with Image.open(io.BytesIO(images.photo_jpeg(num, size=SMALL))) as img:
        edge_img = edges.detect_edges_tutorial(img)
    buf = io.BytesIO()
    edge_img.save(buf, format="JPEG")
    return buf.getvalue()


def test_every_run_completes(all_runs, server):
    out, results = all_runs
    for (variant, loop), r in results.items():
        assert r.failures == [], (variant, loop, r.failures)
        assert [p.name for p in r.downloaded] == [f"image_{n}.jpg" for n in range(1, server.count + 1)]
        assert [p.name for p in r.processed] == [p.name for p in r.downloaded]
        assert r.download_time > 0 and r.process_time > 0
        assert leftovers(out / f"{variant}-{loop}") == []


def test_the_loops_are_the_ones_asked_for(all_runs):
    _, results = all_runs
    for (_variant, loop), r in results.items():
        if loop == "ferroloop":
            assert r.loop_type == "ferroloop._loop.Loop"
        elif loop == "asyncio":
            assert r.loop_type.startswith("asyncio.")


def test_identical_processed_images_in_all_variants_on_both_loops(all_runs, server):
    _, results = all_runs
    runs = list(results.values())
    same, compared = report.compare_outputs(runs)
    assert same and compared == server.count
    for n in range(1, server.count + 1):
        want = expected_output(n)
        for r in runs:
            assert r.processed[n - 1].read_bytes() == want, (r.name, n)


def test_downloads_are_the_served_bytes(all_runs, server):
    _, results = all_runs
    for r in results.values():
        for n, path in enumerate(r.downloaded, start=1):
            assert path.read_bytes() == images.photo_jpeg(n, size=SMALL)


def test_tutorial_report_format(all_runs):
    _, results = all_runs
    text = report.tutorial_report(results["limits", "ferroloop"])
    lines = [ln for ln in text.splitlines() if ln]
    assert lines[0].startswith("Downloaded 4 images in: ") and lines[0].endswith("% of total time")
    assert lines[1].startswith("Processed 4 images in: ")
    assert lines[2].startswith("Total execution time: ") and lines[2].endswith("100.00% of total time")
    table = report.comparison_table(list(results.values()), 4)
    assert "async + processes, with limits" in table and "ferroloop" in table and "asyncio" in table


def test_vectorised_detector_same_files(server, process_pool, tmp_path, all_runs):
    _, results = all_runs
    r = pipeline.run_variant(
        "async", "ferroloop", settings_for(server, tmp_path, detector="vectorised"), process_pool
    )
    assert [p.read_bytes() for p in r.processed] == [
        p.read_bytes() for p in results["sequential", "none"].processed
    ]
