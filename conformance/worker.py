"""Run one test module of test.test_asyncio in this process, on a candidate loop.

Started by conformance.runner, one process per module. Writes one JSON line per event to
--events (flushed at once, so the parent can read what happened even after a hang or a
crash): {"ev": "start", "id"} before each test, {"ev": "end", "id", "outcome", ...} after
it, {"ev": "done"} when the module finished. A faulthandler watchdog, re-armed at every
test boundary, dumps the stacks to --hang and exits if a test (or the fixtures between two
tests) runs longer than --timeout seconds: a hang cannot stall the run, and the parent
knows which test hung.
"""

import argparse
import faulthandler
import json
import os
import sys
import threading
import time
import traceback
import unittest

from . import candidate

PREFIX = "test.test_asyncio."


def short_id(test_id):
    return test_id[len(PREFIX) :] if test_id.startswith(PREFIX) else test_id


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def _unimplemented_method(err):
    """The AbstractEventLoop method whose NotImplementedError caused `err`, if any."""
    exc = err[1]
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NotImplementedError):
            frames = traceback.extract_tb(exc.__traceback__)
            if frames and frames[-1].filename.endswith(os.path.join("asyncio", "events.py")):
                return frames[-1].name
        exc = exc.__cause__ or exc.__context__
    return None


class RecordingResult(unittest.TestResult):
    def __init__(self, events_file, tracker, hang_file, timeout):
        super().__init__()
        self._events = events_file
        self._tracker = tracker
        self._hang = hang_file
        self._timeout = timeout
        self._current = None
        self._lock = threading.Lock()
        # Written at once, so a test that hangs after running the loop still counts as
        # having been on the candidate.
        tracker.on_change = lambda what: self._emit(ev=what)

    def _emit(self, **record):
        with self._lock:
            self._events.write(json.dumps(record) + "\n")
            self._events.flush()

    def _arm(self):
        faulthandler.dump_traceback_later(self._timeout, exit=True, file=self._hang)

    def startTest(self, test):
        super().startTest(test)
        self._tracker.reset()
        self._current = {
            "id": short_id(test.id()),
            "outcome": "passed",
            "t0": time.monotonic(),
            "detail": "",
            "unimplemented": None,
        }
        self._emit(ev="start", id=self._current["id"])
        self._arm()

    def _fail(self, test, err, outcome="failed"):
        rec = self._current
        if rec is None or rec["id"] != short_id(test.id()):
            # An error outside a test (setUpClass, tearDownModule, an import error): its own
            # record, under the fixture's description.
            self._record_fixture_error(test, err)
            return
        rec["outcome"] = outcome
        if err is not None and not rec["detail"]:
            lines = self._exc_info_to_string(err, test).rstrip().splitlines()
            rec["detail"] = "\n".join(lines[-12:])
            rec["unimplemented"] = _unimplemented_method(err)

    def _record_fixture_error(self, test, err):
        snap = self._tracker.snapshot()
        lines = self._exc_info_to_string(err, test).rstrip().splitlines() if err else []
        self._emit(
            ev="end",
            id=short_id(test.id()),
            outcome="failed",
            duration=0.0,
            detail="\n".join(lines[-12:]),
            unimplemented=_unimplemented_method(err) if err else None,
            fixture=True,
            **snap,
        )

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._fail(test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.case._SubTest):
            return  # a skipped subtest: its test goes on
        if self._current is not None and self._current["id"] == short_id(test.id()):
            self._current["outcome"] = "skipped"
            self._current["detail"] = str(reason)
        else:
            # Skipped by setUpClass/setUpModule raising SkipTest: no startTest for it.
            self._emit(
                ev="end",
                id=short_id(test.id()),
                outcome="skipped",
                duration=0.0,
                detail=str(reason),
                created=0,
                ran=False,
            )

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._fail(test, None)
        self._current["detail"] = "unexpected success"

    def stopTest(self, test):
        super().stopTest(test)
        rec, self._current = self._current, None
        if rec is None:
            return
        rec["duration"] = round(time.monotonic() - rec.pop("t0"), 3)
        rec.update(self._tracker.snapshot())
        self._emit(ev="end", **rec)
        self._tracker.reset()
        # Re-armed, not cancelled: the next test's class/module fixtures are watched too.
        self._arm()


def _self_test(tracker):
    """Fail loudly if the tracker cannot see the candidate loop run: the figures would lie."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    snap = tracker.snapshot()
    tracker.reset()
    if not (snap["created"] and snap["ran"]):
        raise SystemExit(f"conformance: candidate loop not tracked ({snap}); harness broken")
    return type(loop)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m conformance.worker")
    parser.add_argument("--module", required=True)
    parser.add_argument("--loop", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--hang", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--exclude", help="file of test ids (short form) not to run")
    parser.add_argument("--only", help="file of test id prefixes (short form) to run, nothing else")
    args = parser.parse_args(argv)

    faulthandler.enable()  # a crash leaves its stack in the module's log
    tracker = candidate.install(args.loop)
    loop_type = _self_test(tracker)

    def read_ids(path):
        if not path:
            return None
        with open(path) as f:
            return {line.strip() for line in f if line.strip()}

    exclude = read_ids(args.exclude) or set()
    only = read_ids(args.only)

    def selected(test_id):
        return only is None or any(test_id == p or test_id.startswith(p + ".") for p in only)

    hang_file = open(args.hang, "w")
    with open(args.events, "a") as events_file:
        events_file.write(
            json.dumps(
                {
                    "ev": "begin",
                    "loop_type": f"{loop_type.__module__}.{loop_type.__qualname__}",
                    "main_thread": threading.main_thread().ident,
                }
            )
            + "\n"
        )
        events_file.flush()
        result = RecordingResult(events_file, tracker, hang_file, args.timeout)
        result._arm()  # import and setUpModule are watched too
        # A bare name is a module of test.test_asyncio; a dotted one is taken as it is (the
        # harness's own tests use that).
        name = args.module if "." in args.module else PREFIX + args.module
        suite = unittest.defaultTestLoader.loadTestsFromName(name)
        tests = [t for t in _flatten(suite) if short_id(t.id()) not in exclude and selected(short_id(t.id()))]
        unittest.TestSuite(tests).run(result)
        faulthandler.cancel_dump_traceback_later()
        events_file.write(json.dumps({"ev": "done"}) + "\n")
        events_file.flush()
    # Skip interpreter teardown: leftover threads or loops of a test must not hang the exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
