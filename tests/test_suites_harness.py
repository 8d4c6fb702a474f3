"""The suites harness (suites/) itself: outcomes read from junit XML, the per-test
comparison, the expectations file's format, and the injected plugin putting the candidate
behind asyncio's default policy (in a subprocess: it patches asyncio globally)."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from suites import compare  # noqa: E402

JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite>
 <testcase classname="tests.test_a" name="test_ok" time="0.1"/>
 <testcase classname="tests.test_a" name="test_bad" time="0.1"><failure message="assert 1 == 2">x</failure></testcase>
 <testcase classname="tests.test_a" name="test_err" time="0.1"><error message="fixture">y</error></testcase>
 <testcase classname="tests.test_a" name="test_skip" time="0"><skipped message="no"/></testcase>
 <testcase classname="tests.test_a" name="test_hang" time="60"><failure message="Failed: Timeout &gt;60.0s">+++ Timeout +++</failure></testcase>
 <testcase classname="tests.test_a" name="test_teardown" time="0.1"><failure message="f">z</failure></testcase>
 <testcase classname="tests.test_a" name="test_teardown" time="0.1"/>
</testsuite></testsuites>
"""


def test_outcomes_from_junit(tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    got = compare.outcomes(path)
    assert got == {
        "tests.test_a::test_ok": "passed",
        "tests.test_a::test_bad": "failed",
        "tests.test_a::test_err": "error",
        "tests.test_a::test_skip": "skipped",
        "tests.test_a::test_hang": "hung",
        "tests.test_a::test_teardown": "failed",
    }
    assert compare.counts(got) == {"passed": 1, "failed": 2, "error": 1, "skipped": 1, "hung": 1}
    assert compare.outcomes(tmp_path / "missing.xml") == {}


def test_regressions_are_passes_on_asyncio_only():
    control = {"a": "passed", "b": "passed", "c": "failed", "d": "passed", "e": "passed"}
    candidate = {"a": "passed", "b": "hung", "c": "passed", "d": "skipped"}
    assert compare.regressions(control, candidate) == {"b": "hung", "d": "skipped", "e": "missing"}


def test_expectations_file_is_well_formed(tmp_path):
    table = compare.load_expectations()
    assert table and all(reason in compare.REASONS for reason, _ in table.values())
    bad = tmp_path / "e.txt"
    bad.write_text("aiohttp tests.x::y  because: no such reason\n")
    with pytest.raises(ValueError, match="reason must be one of"):
        compare.load_expectations(bad)


@pytest.mark.parametrize("loop", ["ferroloop", "asyncio"])
def test_plugin_puts_the_candidate_behind_the_default_policy(loop, tmp_path):
    code = textwrap.dedent("""
        import asyncio, json, ferroloop_suite_plugin as plugin
        async def kind():
            return type(asyncio.get_running_loop()).__module__
        print(json.dumps([asyncio.run(kind()), plugin._stats["created"], plugin._stats["ran"] > 0]))
    """)
    env = {
        **os.environ,
        "FERROLOOP_SUITE_LOOP": loop,
        "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "suites", "plugin"), os.path.join(ROOT, "python")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    module, created, ran = __import__("json").loads(out)
    if loop == "ferroloop":
        assert module.startswith("ferroloop") and created == 1 and ran
    else:
        assert module.startswith("asyncio") and created == 0
