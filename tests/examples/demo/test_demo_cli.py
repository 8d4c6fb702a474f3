"""`python -m ferroloop_demo` (what `./dev demo` runs): the command, its report, its last
line; and the ferroloop package neither carries the demo nor loads anything heavy for its
command line."""

import re
import subprocess
import sys

from .demo_helpers import demo_env  # (skips without the demo's requirements)


def run_demo(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ferroloop_demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=demo_env(),
    )


def test_demo_command_report_and_last_line(tmp_path):
    out = tmp_path / "out"
    p = run_demo(
        "--count",
        "3",
        "--size",
        "160x90",
        "--latency",
        "0.05",
        "--bandwidth",
        "0",
        "--variants",
        "sequential,async,limits",
        "--out",
        str(out),
        "--fail",
        "2:flaky",
        "--backoff",
        "0.05",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.rstrip("\n").splitlines()
    assert re.fullmatch(r"async\+processes vs sequential: \d+\.\dx faster", lines[-1]), lines[-1]
    text = p.stdout
    for title in (
        "=== sequential",
        "=== async + processes on ferroloop",
        "=== async + processes on asyncio",
        "=== async + processes, with limits on ferroloop",
        "=== async + processes, with limits on asyncio",
    ):
        assert title in text
    assert text.count("Total execution time: ") == 5
    assert "Processed images identical in all 5 runs: yes (3 images compared byte for byte)" in text
    assert (out / "times.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "limits-ferroloop" / "processed").iterdir()) == [
        "image_1.jpg",
        "image_2.jpg",
        "image_3.jpg",
    ]
    # Running again into the same folder is fine; a foreign non-empty folder is refused.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    p = run_demo("--count", "1", "--size", "16x9", "--out", str(foreign), "--variants", "sequential")
    assert p.returncode != 0 and "not empty" in p.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_demo_help_and_bad_options():
    p = run_demo("--help", timeout=60)
    assert p.returncode == 0 and "--executor" in p.stdout and "dask://HOST:PORT" in " ".join(p.stdout.split())
    p = run_demo("--variants", "fastest", timeout=60)
    assert p.returncode == 2 and "choose from" in p.stderr
    for bad, said in (
        ("--executor=ray://x", "unknown executor"),
        ("--fail=3:boom", "unknown failure mode"),
        ("--count=0", "at least 1"),
    ):
        p = run_demo(bad, timeout=60)
        assert p.returncode != 0 and said in p.stderr, (bad, p.stderr)


def test_the_package_has_no_demo_and_its_command_line_loads_nothing_heavy():
    code = (
        "import importlib.util, sys; from ferroloop._cli import build_parser; build_parser(); "
        "heavy = [m for m in ('PIL', 'numpy', 'aiohttp', 'httpx', 'ferroloop_demo') if m in sys.modules]; "
        "print(heavy, importlib.util.find_spec('ferroloop.demo'))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[] None"
    p = subprocess.run(
        [sys.executable, "-m", "ferroloop", "demo"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "invalid choice" in p.stderr, p.stderr
