"""The benchmark runner's own logic (parsing, aggregation, verdicts), on made-up results.

Running the benchmarks themselves is ./dev test's smoke step, not pytest's job.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report, runner  # noqa: E402

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   380.12us   52.10us   2.10ms   90.00%
  Latency Distribution
     50%  371.00us
     75%  400.00us
     90%  430.00us
     99%    1.20ms
  262000 requests in 2.00s, 20.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec: 131000.00
"""


def test_parse_wrk():
    r = runner.parse_wrk(WRK_OUTPUT)
    assert r["msgs"] == 262000 and r["secs"] == 2.0
    assert r["p50_us"] == 371.0 and r["p99_us"] == 1200.0
    assert r["errors"] == 3 and r["non2xx"] == 0


def test_select_benches():
    assert runner.select_benches(None) == runner.ALL_BENCHES
    assert runner.select_benches(["micro"]) == list(runner.MICRO)
    assert runner.select_benches(["timers*", "timers"]) == ["timers", "timers_cancel"]


def _run(bench, loop, ops_s, cpu_op, ok=True):
    if not ok:
        return dict(
            bench=bench, loop=loop, ok=False, stage="start", error="NotImplementedError: in create_server()"
        )
    return dict(bench=bench, loop=loop, ok=True, ops_per_sec=ops_s, cpu_per_op=cpu_op)


def _results():
    runs = []
    for ops, cpu in ((100, 1.0), (120, 0.9), (90, 1.1)):
        runs.append(_run("call_soon", "uvloop", ops, cpu))
        runs.append(_run("call_soon", "ferroloop", ops * 2, cpu / 2))
        runs.append(_run("call_soon", "rloop", ops * 3, cpu / 3))
        runs.append(_run("http_c50", "uvloop", ops, cpu))
        runs.append(_run("http_c50", "ferroloop", 0, 0, ok=False))
        runs.append(_run("http_c50", "rloop", ops, cpu))
    meta = dict(
        benches=["call_soon", "http_c50"],
        labels=["ferroloop", "uvloop", "rloop"],
        baseline="uvloop",
        units={"call_soon": "callback"},
        net={"http_c50": runner.NET["http_c50"]},
        sizes={"call_soon": 10},
        repeat=3,
        quick=False,
        duration=1.0,
        pinned=True,
        date="today",
        cpu="cpu",
        cores=2,
        kernel="k",
        libc="glibc",
        python="3.11",
        ferroloop_commit="abc",
    )
    return {"meta": meta, "runs": runs, "callgrind": []}


def test_summarize_medians_ratios_and_failures():
    s = runner.summarize(_results())
    cs = s[("call_soon", "ferroloop")]
    assert cs["ops_per_sec"] == 200 and cs["ops_per_sec_min"] == 180 and cs["ops_per_sec_max"] == 240
    assert abs(cs["speed_vs_base"] - 2.0) < 1e-9 and abs(cs["cpu_vs_base"] - 0.5) < 1e-9
    assert s[("http_c50", "ferroloop")]["n_ok"] == 0
    assert s[("http_c50", "ferroloop")]["failures"] == ["[start] NotImplementedError: in create_server()"]


def test_verdict_names_what_falls_short():
    res = _results()
    s = runner.summarize(res)
    assert runner.verdict(s, res["meta"], "call_soon") == "short: CPU/op above rloop"
    assert runner.verdict(s, res["meta"], "http_c50").startswith("fails: [start] NotImplementedError")


def test_markdown_reports_failures_not_hides_them():
    md = report.markdown(_results())
    assert "| `http_c50` | ferroloop | **failed**" in md
    assert "2.00× · 0.50×" in md
    assert "## Failures" in md
