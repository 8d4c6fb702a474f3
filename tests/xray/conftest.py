import os
import subprocess
import sys

import pytest

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


@pytest.fixture
def seed():
    return SEED
