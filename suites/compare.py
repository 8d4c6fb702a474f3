"""Per-test outcomes from junit XML, the comparison between loops, and the expectations.

Outcomes: passed, failed, error, skipped, hung (a failure pytest-timeout reported).
A regression is a test that passed on asyncio and did not pass on the candidate (failed,
error, hung, or skipped where asyncio ran it). Each must be listed in expectations.txt:

    <library> <test id>  <reason>: <text>

with reason `private` (the test reads asyncio internals), `flaky` (flaky on asyncio too,
with the evidence in the text) or `bug` (an open ferroloop bug, with where it is tracked).
"""

import xml.etree.ElementTree as ET
from pathlib import Path

EXPECTATIONS = Path(__file__).resolve().parent / "expectations.txt"
REASONS = ("private", "flaky", "bug")
OUTCOMES = ("passed", "failed", "error", "skipped", "hung")


def outcomes(junit):
    """{test id: outcome} from one junit XML file (test id: classname::name)."""
    result = {}
    if junit is None or not Path(junit).exists():
        return result
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                text = (child.get("message") or "") + (child.text or "")[:2000]
                if "Timeout" in text and (
                    "pytest-timeout" in text or "Timeout >" in text or "Timeout (>" in text
                ):
                    outcome = "hung"
                else:
                    outcome = "failed" if child.tag == "failure" else "error"
                break
            if child.tag == "skipped":
                outcome = "skipped"
        # A test that failed in its call and errored in teardown appears twice: keep the worst.
        if result.get(test_id) in ("failed", "error", "hung") and outcome == "passed":
            continue
        result[test_id] = outcome
    return result


def counts(results):
    c = dict.fromkeys(OUTCOMES, 0)
    for outcome in results.values():
        c[outcome] += 1
    return c


def regressions(control, candidate):
    """Tests that passed on the control and did not pass on the candidate: {id: outcome}."""
    return {
        t: candidate.get(t, "missing")
        for t, o in control.items()
        if o == "passed" and candidate.get(t, "missing") != "passed"
    }


def load_expectations(path=EXPECTATIONS):
    """{(library, test id): (reason, text)}; raises ValueError on a malformed line."""
    table = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            library, test_id, rest = line.split(None, 2)
            reason, _, text = rest.partition(":")
        except ValueError:
            raise ValueError(f"{path}:{n}: expected '<library> <test id>  <reason>: <text>'") from None
        if reason not in REASONS or not text.strip():
            raise ValueError(f"{path}:{n}: reason must be one of {REASONS} followed by ': why'")
        table[(library, test_id)] = (reason, text.strip())
    return table
