"""The differential tester (issue 11): random programs of loop and transport operations
run on ferroloop and on stock asyncio; what a program observes must be the same, and
nothing may be left over. Bounded here (a fixed, derandomized budget, see conftest.py's
profiles); `./dev fuzz --minutes N` runs it for longer with fresh randomness.

Shrunk counterexamples it found are kept as explicit regression cases below."""

import asyncio
import sys

import pytest
from hypothesis import given, note, reject

import ferroloop

from .scenario import observe
from .strategies import programs

CASES_RUN = [0]


# Defects of the running Python's own asyncio that the tester found: a program that meets
# one says nothing about ferroloop, and is set aside (hypothesis.reject).
def _writelines_on_a_lost_transport(program, obs):
    """3.12+'s socket writelines() does not check that the connection is lost: it buffers
    on a dead transport and fails later on the cleared loop ('NoneType' ...). ferroloop
    drops the data, as write() does."""
    if sys.version_info < (3, 12):
        return False
    ops = [op[0] for op in program["ops"]]
    ended = [i for i, op in enumerate(ops) if op in ("close", "abort", "peer_close", "peer_abort")]
    late = ended and "writelines" in ops[ended[0] :]
    return bool(late) and any(o and "'NoneType'" in o[-1] for o in obs.get("outcomes", []))


KNOWN_ASYNCIO_DEFECTS = [("writelines on a lost transport", _writelines_on_a_lost_transport)]


def check(program, in_hypothesis=True):
    CASES_RUN[0] += 1
    ours = observe(ferroloop.new_event_loop, program)
    theirs = observe(asyncio.new_event_loop, program)
    for name, meets in KNOWN_ASYNCIO_DEFECTS:
        if in_hypothesis and meets(program, theirs):
            note(f"stock asyncio defect: {name}")
            reject()
    if in_hypothesis:
        note(f"ferroloop: {ours}")
        note(f"asyncio:   {theirs}")
    assert ours == theirs, f"ferroloop {ours}\nasyncio   {theirs}"
    assert ours.get("settled", True), "the program did not settle (a hang) on either loop"
    assert ours["fds_left"] == 0 and ours["threads_left"] == 0
    assert ours.get("timers_in_order", True), "timers ran out of deadline order"
    assert ours.get("delivered", True) and ours.get("delivered_at_most_written", True)


@given(programs)
def test_ferroloop_and_asyncio_observe_the_same(program):
    check(program)


# Shrunk counterexamples (from the fuzz runs), kept as regressions.
REGRESSIONS = [
    # issue 11 finding 1: writelines of more than 64 buffers stalled on ferroloop
    {"kind": "tcp", "ops": [("writelines", [1] * 65)]},
    {"kind": "tcp", "ops": [("write", 3 << 20), ("writelines", [10] * 100), ("write_eof",)]},
    # found by the tester: on 3.11 writelines() after write_eof() must name write()
    {"kind": "tcp", "ops": [("write_eof",), ("writelines", [])]},
    {"kind": "unix", "ops": [("write_eof",), ("writelines", [1, 2])]},
    # found by the tester (a harness race: write_eof on a reset socket not yet noticed)
    {
        "kind": "tcp",
        "ops": [
            ("sleep", 3),
            ("write", 3 << 20),
            ("pause_peer",),
            ("threadsafe", 34, 0),
            ("peer_abort",),
            ("sleep", 2),
            ("timer", 7, True, 262),
        ],
    },
    # found by the tester (a harness flaw: an EOF read or a failed write first, by timing)
    {
        "kind": "unix",
        "ops": [("write", 1 << 20), ("server_close",), ("sleep", 2), ("sleep", 5), ("peer_close",)],
    },
    # found by the tester (a harness flaw: deadlines depend on how long operations took)
    {
        "kind": "tcp",
        "ops": [("timer", 18, False, 1), ("server_close",), ("server_close",), ("timer", 17, False, 0)],
    },
]


@pytest.mark.parametrize("program", REGRESSIONS)
def test_regressions(program):
    check(program, in_hypothesis=False)
