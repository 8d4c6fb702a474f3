"""What the x-ray tests share: the seed examples they run and the CLI runner. A module of
its own, not conftest: tests/conftest.py is also imported as `conftest`, and which one a
`from conftest import` finds depends on what pytest collected first."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "seed-examples")
SEED = SHARED if os.path.isdir(SHARED) else os.path.join(HERE, "..", "seed_examples")
ARTIFACTS = os.path.join(HERE, "..", "..", "artifacts", "xray")


def run_cli(*args, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ferroloop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or SEED,
    )
