"""Fixtures for the demo's tests: small images, a fast server, a fork-server process pool,
kept for the package's tests and stopped after them.
(The demo needs the `demo` extra; without it these tests skip, see demo_helpers.)"""

import pytest


@pytest.fixture(scope="package")
def server():
    """Four small images, no latency to speak of, no bandwidth cap, no failures."""
    from ferroloop.demo.server import ImageServer

    from .demo_helpers import SMALL

    with ImageServer(4, latency=0.01, bandwidth=0, size=SMALL, start_timeout=60) as srv:
        yield srv


@pytest.fixture(scope="package")
def process_pool():
    from ferroloop.demo.executors import make_executor_factory

    with make_executor_factory("process") as factory:
        yield factory
