"""The conformance harness (conformance/) itself: what it records per test, and the gate
that CI applies with the expectations file. The harness patches asyncio globally, so it is
only ever run in subprocesses here."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from conformance import expectations, runner  # noqa: E402

SAMPLE = "tests.conformance_sample_suite"


@pytest.fixture(scope="module", params=["ferroloop", "asyncio"])
def sample_run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    tests, info = runner.run_module(
        SAMPLE,
        f"{request.param}:new_event_loop",
        timeout=3.0,
        module_timeout=60.0,
        workdir=str(tmp / "work"),
        log_path=str(tmp / "log.txt"),
    )
    return {k.rsplit(".", 1)[1]: v for k, v in tests.items()}, info


def test_records_each_kind_of_test(sample_run):
    tests, info = sample_run
    assert info["status"] == "ok" and info["restarts"] == 1, info
    a = tests["test_a_passes_on_candidate"]
    assert (a["outcome"], a["created"], a["ran"]) == ("passed", 1, True)
    b = tests["test_b_fails_on_candidate"]
    assert (b["outcome"], b["ran"]) == ("failed", True) and "RuntimeError: boom" in b["detail"]
    c = tests["test_c_creates_but_never_runs"]
    assert (c["outcome"], c["created"], c["ran"]) == ("passed", 1, False)
    d = tests["test_d_hangs_on_candidate"]
    assert (d["outcome"], d["ran"]) == ("hung", True) and "run_forever" in d["detail"]
    # The module was restarted past the hang, so the tests after it still ran.
    assert tests["test_e_passes_after_the_hang"]["outcome"] == "passed"
    f = tests["test_f_stock_loop_only"]
    assert (f["outcome"], f["created"], f["ran"]) == ("passed", 0, False)
    assert tests["test_g_skipped"]["outcome"] == "skipped"


def _results(**outcomes):
    recs = {
        "ok": {"outcome": "passed", "created": 1, "ran": True},
        "bad": {"outcome": "failed", "created": 1, "ran": True, "detail": "E: x"},
        "hung": {"outcome": "hung", "created": 1, "ran": True, "detail": "limit"},
        "stock_bad": {"outcome": "failed", "created": 0, "ran": False, "detail": "E: y"},
        "nie": {
            "outcome": "failed",
            "created": 1,
            "ran": True,
            "detail": "NotImplementedError",
            "unimplemented": "create_server",
        },
    }
    return {
        "subset": "full",
        "python": "3.11.7",
        "modules": {},
        "tests": {k: dict(recs[v]) for k, v in outcomes.items()},
    }


def _entries(**cats):
    return {t: expectations.Entry(t, c, "why") for t, c in cats.items()}


def test_gate_fails_on_unlisted_failures_and_listed_passes():
    res = _results(**{"m.A.t1": "bad", "m.A.t2": "ok", "m.A.t3": "hung", "m.A.t4": "stock_bad"})
    diff = expectations.compare(res, _entries(**{"m.A.t2": "private"}))
    assert [t for t, _ in diff["unexpected_failures"]] == ["m.A.t1", "m.A.t3"]
    assert [t for t, _ in diff["unexpected_passes"]] == ["m.A.t2"]
    # A failure with stock loops only is not ferroloop's: noted, not gated.
    assert any("m.A.t4" in w for w in diff["warnings"])
    # ...but a module that does not even load is.
    res = _results(**{"unittest.loader._FailedTest.test_x": "stock_bad"})
    assert len(expectations.compare(res, {})["unexpected_failures"]) == 1


def test_gate_accepts_listed_failures_and_rejects_bad_categories():
    res = _results(**{"m.A.t1": "bad", "m.A.t2": "hung"})
    diff = expectations.compare(res, _entries(**{"m.A.t1": "todo-issue-3", "m.A.t2": "bug"}))
    assert not diff["unexpected_failures"] and not diff["unexpected_passes"] and not diff["bad_entries"]
    diff = expectations.compare(res, _entries(**{"m.A.t1": "unclassified", "m.A.t2": "flaky"}))
    assert len(diff["bad_entries"]) == 2


def test_refresh_keeps_reasons_adds_and_drops(tmp_path):
    res = _results(**{"m.A.t1": "bad", "m.A.t2": "ok", "m.A.t3": "nie", "m.A.t4": "stock_bad"})
    old = _entries(**{"m.A.t1": "private", "m.A.t2": "bug", "m.B.gone": "private"})
    new = expectations.refresh(res, old, prune=False)
    assert new["m.A.t1"].reason == "why" and new["m.A.t1"].category == "private"
    assert new["m.A.t2"].tag() == "bug@3.12,3.13"  # it passes on 3.11 now
    assert new["m.A.t3"].category == "todo-issue-3"  # from the NotImplementedError's method
    assert "m.A.t4" not in new and new["m.B.gone"].tag() == "private"
    assert expectations.refresh(res, old, prune=True)["m.B.gone"].tag() == "private@3.12,3.13"
    path = tmp_path / "exp.txt"
    expectations.save(new, str(path))
    loaded = expectations.load(str(path))
    assert {t: (e.category, e.reason) for t, e in loaded.items()} == {
        t: (e.category, e.reason) for t, e in new.items()
    }


def test_entries_limited_to_python_versions():
    res = _results(**{"m.A.t1": "bad", "m.A.t2": "ok", "m.A.t3": "ok"})  # a 3.11 run
    old = {
        "m.A.t1": expectations.Entry("m.A.t1", "private", "why", ["3.12"]),  # not for 3.11
        "m.A.t2": expectations.Entry("m.A.t2", "bug", "why", ["3.12"]),
        "m.A.t3": expectations.Entry("m.A.t3", "bug", "why"),  # every version
    }
    diff = expectations.compare(res, old)
    assert [t for t, _ in diff["unexpected_failures"]] == ["m.A.t1"]
    assert [t for t, _ in diff["unexpected_passes"]] == ["m.A.t3"]
    new = expectations.refresh(res, old)
    assert new["m.A.t1"].tag() == "private@3.11,3.12"  # reason kept, now on 3.11 too
    assert new["m.A.t2"].tag() == "bug@3.12"  # untouched: the 3.11 run says nothing of it
    assert new["m.A.t3"].tag() == "bug@3.12,3.13"  # fixed on 3.11 only
    fresh = expectations.refresh(_results(**{"m.B.t": "bad"}), {})
    assert fresh["m.B.t"].tag() == "unclassified@3.11"
