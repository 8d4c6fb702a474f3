"""The tutorial's example programs (../shared/seed-examples) are the acceptance tests: each
must pass on ferroloop as it does on stock asyncio."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "seed-examples")
# The user's originals when they sit beside the checkout, else the copy in the repo.
SEED = os.environ.get("FERROLOOP_SEED_EXAMPLES") or (
    SHARED if os.path.isdir(SHARED) else os.path.join(HERE, "seed_examples")
)


@pytest.mark.parametrize("spec", ["ferroloop:new_event_loop", "asyncio:new_event_loop"])
def test_all_seed_examples_pass(spec):
    p = subprocess.run(
        [sys.executable, os.path.join(SEED, "run_all.py"), spec], capture_output=True, text=True, timeout=900
    )
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 0 failed" in p.stdout.splitlines()[-1]
