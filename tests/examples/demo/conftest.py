"""Fixtures for the demo's tests: small images, a fast server, a fork-server process pool,
kept for the package's tests and stopped after them. The demo is not installed: it is
imported from examples/demo, as `./dev demo` runs it.
(The demo needs examples/demo/requirements.txt; without it these tests skip, see
demo_helpers.)"""

import sys

import pytest

from . import DEMO_DIR

if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))


@pytest.fixture(scope="package")
def server():
    """Four small images, no latency to speak of, no bandwidth cap, no failures."""
    from ferroloop_demo.server import ImageServer

    from .demo_helpers import SMALL

    with ImageServer(4, latency=0.01, bandwidth=0, size=SMALL, start_timeout=60) as srv:
        yield srv


@pytest.fixture(scope="package")
def process_pool():
    from ferroloop_demo.executors import make_executor_factory

    with make_executor_factory("process") as factory:
        yield factory
