"""The long run of the differential tester: `./dev fuzz --minutes N` (or
`python tests/fuzz/run.py --minutes N`). Runs batches of fresh random programs until the
time is up; a failing program is shrunk by hypothesis, printed, and the run goes on.
Ends with how many programs ran and how many failures were found (exit 1 if any)."""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("FERROLOOP_FUZZ_PROFILE", "long")

from hypothesis import HealthCheck, settings  # noqa: E402

from fuzz import conftest  # noqa: E402,F401  (the profiles)
from fuzz.test_differential import CASES_RUN, test_ferroloop_and_asyncio_observe_the_same  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--batch", type=int, default=50, help="programs per hypothesis run")
    args = ap.parse_args()
    end = time.monotonic() + args.minutes * 60
    test = settings(
        max_examples=args.batch,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )(test_ferroloop_and_asyncio_observe_the_same)
    batches, failures = 0, 0
    t0 = time.monotonic()
    while time.monotonic() < end:
        batches += 1
        try:
            test()
        except Exception:
            failures += 1
            print(f"--- failure {failures} (batch {batches}, {CASES_RUN[0]} programs so far):", flush=True)
            traceback.print_exc()
            sys.stdout.flush()
        print(
            f"batch {batches}: {CASES_RUN[0]} programs, {failures} failures, {time.monotonic() - t0:.0f} s",
            flush=True,
        )
    print(
        f"fuzz: {CASES_RUN[0]} programs run on both loops in {time.monotonic() - t0:.0f} s, "
        f"{failures} failing batches"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
