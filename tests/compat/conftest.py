"""The real-library compatibility suite: real libraries (aiohttp, httpx, uvicorn, websockets,
asyncpg, redis-py, aiofiles, anyio) driven on ferroloop, every scenario also run on stock
asyncio as the control.

Fixtures here:

* ``arun`` — parametrized ``ferroloop`` / ``asyncio``: ``arun(coro_fn, *args)`` runs the
  coroutine function on a fresh loop of that kind through ``asyncio.Runner`` (so the
  library sees a normal running loop), bounded by a timeout. Around the run it checks that
  the loop reported no error to its exception handler (unclosed transports, exceptions
  never retrieved, ...) and that no file descriptor and no zombie child was left behind.
* ``postgres`` / ``redis_server`` — real servers from Debian's packages, started once per
  session on loopback on free ports in a temp dir and stopped at the end.
* ``tls`` — a throw-away CA and certificates for localhost/127.0.0.1 (trustme).

A missing server binary or library makes the tests that need it fail (loudly). To skip
them instead on a machine that cannot have them, opt out explicitly:
``FERROLOOP_COMPAT_SKIP=postgres,redis`` (comma-separated; ``all`` skips every server test).
"""

import time

import pytest

from .compatlib import (
    FACTORIES,
    TLS,
    Postgres,
    Redis,
    Run,
    fd_target,
    open_fds,
    server_unavailable,
    skipped_servers,
    zombie_children,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.compat_call_failed = rep.failed or (call.excinfo is not None)


@pytest.fixture(params=list(FACTORIES))
def arun(request):
    """Runs a scenario on ferroloop, then on stock asyncio (the control); checks that the
    loop logged no error and that no fd or zombie child is left once the loop is closed.
    (The checks are skipped when the scenario itself failed: its traceback keeps objects
    alive, and the first failure is the one to read.)"""
    before = open_fds()
    zombies_before = set(zombie_children())
    run = Run(request.param)
    yield run
    if getattr(request.node, "compat_call_failed", False):
        return
    assert not run.errors, f"the loop reported errors:\n{run.describe_errors()}"
    after = open_fds()
    leaked = sorted(set(after) - set(before))
    assert len(after) <= len(before), f"fd leak on {run.name}: {[(fd, fd_target(fd)) for fd in leaked]}"
    # a child is reaped by the time its scenario returns (asyncio's contract for wait())
    deadline = time.monotonic() + 2
    while set(zombie_children()) - zombies_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(zombie_children()) - zombies_before, "zombie children left behind"


@pytest.fixture(scope="session")
def tls():
    return TLS()


@pytest.fixture(scope="session")
def postgres():
    if "postgres" in skipped_servers() or "all" in skipped_servers():
        server_unavailable("postgres", "opted out")
    pg = Postgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def redis_server():
    if "redis" in skipped_servers() or "all" in skipped_servers():
        server_unavailable("redis", "opted out")
    r = Redis()
    try:
        r.start()
        yield r
    finally:
        r.stop()


# The fixtures above that start a server from Debian's packages, and the package: a test
# that uses one is marked `external` (pyproject.toml), so `./dev test --fast` leaves it out.
SERVER_FIXTURES = {"postgres": "postgresql", "redis_server": "redis-server"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, package in SERVER_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.external(package))
