"""Timelines: the recorder's Chrome trace events and the self-contained HTML page,
rendered by headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import pytest
from xray_cli import ARTIFACTS, run_cli

import ferroloop
from ferroloop import xray


def spans(trace, lane_prefix):
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    out = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and names.get((e["pid"], e["tid"]), "").startswith(lane_prefix):
            out.setdefault(names[(e["pid"], e["tid"])], []).append((e["name"], e["ts"], e["ts"] + e["dur"]))
    return out


def test_example3_both_tasks_wait_on_timers_at_once(tmp_path, seed):
    out = tmp_path / "ex3.json"
    p = run_cli("trace", "ex3_create_task.py", "-o", str(tmp_path / "ex3.html"), "--json", str(out))
    assert p.returncode == 0, p.stderr
    trace = json.loads(out.read_text())
    lanes = spans(trace, "task ")
    w2 = [s for s in lanes["task async_function#2"] if s[0] == "waiting: timer"]
    w3 = [s for s in lanes["task async_function#3"] if s[0] == "waiting: timer"]
    assert len(w2) == 1 and len(w3) == 1
    (_, a2, b2), (_, a3, b3) = w2[0], w3[0]
    assert min(b2, b3) - max(a2, a3) > 0.9e6  # suspended on their timers together for ~1 s
    assert 0.9e6 < b2 - a2 < 1.2e6 and 1.9e6 < b3 - a3 < 2.2e6


def test_example5_loop_blocked_and_second_task_waiting(tmp_path, seed):
    out = tmp_path / "ex5.json"
    p = run_cli("trace", "ex5_blocking_sleep.py", "-o", str(tmp_path / "ex5.html"), "--json", str(out))
    assert p.returncode == 0, p.stderr
    trace = json.loads(out.read_text())
    loop = spans(trace, "loop thread")["loop thread (busy)"]
    blocked = [s for s in loop if s[0].startswith("BLOCKED")]
    assert len(blocked) == 2
    tasks = spans(trace, "task ")
    block2 = [s for s in tasks["task async_function#2"] if s[0] == "BLOCKING the loop"][0]
    step3 = [s for s in tasks["task async_function#3"] if s[0] == "BLOCKING the loop"][0]
    assert step3[1] >= block2[2] - 1  # async_function#3 could only start once #2 let go of the loop


def test_python_api_and_executor_lanes(tmp_path):
    import asyncio
    import concurrent.futures

    def work(n):
        return sum(range(n))

    async def main():
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            await asyncio.gather(loop.run_in_executor(pool, work, 10**6), asyncio.to_thread(work, 10**6))
        return "ok"

    with xray.record(blocking_threshold=0.5) as rec:
        assert ferroloop.run(main()) == "ok"
    trace = rec.chrome_trace()
    jobs = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "thread"]
    assert {e["name"] for e in jobs} == {"test_python_api_and_executor_lanes.<locals>.work"}
    assert len(jobs) == 2
    report = rec.report()
    # asyncio's task counter is the process's: the number depends on the tests before
    assert re.fullmatch(r"test_python_api_and_executor_lanes\.<locals>\.main#\d+", report.tasks[0].name)


def test_html_page_is_package_data():
    """The page's HTML, CSS and script are a file of the installed package, filled in
    with the title and the trace in one pass."""
    from importlib import resources

    from ferroloop.xray.export import html_page

    page = resources.files("ferroloop.xray").joinpath("timeline.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("@TITLE@") == 2 and page.count("@DATA@") == 1
    out = html_page({"traceEvents": [{"name": "</script>@TITLE@"}]}, title="a <b>")
    assert out.count("<title>a &lt;b&gt;</title>") == 1 and "@DATA@" not in out
    assert '"</script>@TITLE@"'.replace("</", "<\\/") in out  # the data is not read as markup


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.external("chromium")
def test_html_timeline_renders_in_headless_chromium(tmp_path, seed):
    browser = _chromium()
    assert browser, "Debian's chromium is needed (./dev test installs it)"
    page = tmp_path / "ex3.html"
    p = run_cli("trace", "ex3_create_task.py", "-o", str(page))
    assert p.returncode == 0, p.stderr
    args = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,420"]
    dom = subprocess.run(
        args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert 'data-rendered="1"' in dom  # the page's own script ran to the end
    assert dom.count('class="lane"') == 5  # loop, timers, main and its two tasks
    for name in (
        "loop thread (busy)",
        "timers",
        "task main#1",
        "task async_function#2",
        "task async_function#3",
    ):
        assert f'data-name="{name}"' in dom
    assert dom.count('data-cat="wait-timer"') >= 2 and dom.count('data-cat="step"') >= 6
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "ex3-timeline.png")
    subprocess.run(args + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert os.path.getsize(shot) > 5000


MANY = """
import asyncio

async def work(i):
    await asyncio.sleep(0.001 * (i % 7))

async def other():
    await asyncio.sleep(0.002)

async def main():
    await asyncio.gather(*(work(i) for i in range(300)), other())

asyncio.run(main())
"""


@pytest.mark.external("chromium")
def test_html_page_groups_filters_and_zooms_many_tasks(tmp_path):
    browser = _chromium()
    assert browser, "Debian's chromium is needed (./dev test installs it)"
    (tmp_path / "many.py").write_text(MANY)
    page = tmp_path / "many.html"
    p = run_cli("trace", "many.py", "-o", str(page), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    args = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,900",
        "--dump-dom",
    ]

    def dom(fragment=""):
        out = subprocess.run(
            args + [page.as_uri() + fragment], capture_output=True, text=True, timeout=120
        ).stdout
        assert 'data-rendered="1"' in out
        return out

    grouped = dom()  # 301 task lanes: grouped by coroutine at first
    assert 'data-name="work" data-count="300"' in grouped and 'data-name="other" data-count="1"' in grouped
    assert grouped.count('class="lane"') == 2  # loop, timers: no task lane drawn one by one
    flat = dom("#group=0&filter=work%2317&zoom=0-1")  # work#17, work#170..work#179; the first ms
    assert flat.count('class="lane"') == 11 and 'data-name="task work#17"' in flat
    assert 'data-name="task other#' not in flat
    assert 'data-zoom="0-1"' in flat and "1.00 ms" in flat
