"""Shared fixtures. Most behaviour tests run on ferroloop *and* on stock asyncio (the
control): a test that passes on asyncio and fails on ferroloop is a compatibility bug, and
one that would pass on anything is caught by the control's expectations too."""

import asyncio
import gc
import os

import pytest

import ferroloop

FACTORIES = {
    "ferroloop": ferroloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def _close(loop):
    if not loop.is_closed():
        if not loop.is_running():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.fixture(params=list(FACTORIES))
def loop(request):
    """A fresh loop: ferroloop, then stock asyncio as the control."""
    lp = FACTORIES[request.param]()
    yield lp
    _close(lp)


@pytest.fixture
def floop():
    """A fresh ferroloop loop, for ferroloop-only behaviour."""
    lp = ferroloop.new_event_loop()
    yield lp
    _close(lp)


def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))
