"""Shared fixtures. Most behaviour tests run on ferroloop *and* on stock asyncio (the
control): a test that passes on asyncio and fails on ferroloop is a compatibility bug, and
one that would pass on anything is caught by the control's expectations too."""

import asyncio
import gc
import os
import threading
import time

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


# --- leak gates (issue 11) --------------------------------------------------------------
# Descriptors, child processes and threads are counted before and after each test module;
# the module that leaves any behind fails, naming them. What a session- or package-scoped
# fixture starts (a PostgreSQL server, the demo's process pool) lives on by design and is
# exempt: the hook below records what each such fixture's setup created. Threads and
# children still finishing (a closed loop's executor threads exit on their own, shortly)
# are waited for on that real condition, for a bounded time.

_GRACE = float(os.environ.get("FERROLOOP_LEAK_GRACE", "10"))  # seconds a finishing thread or child is given
_EXEMPT = {"fds": set(), "pids": set(), "threads": set()}


def _fd_table():
    table = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            table[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, gone already
    return table


def _children():
    me, kids = os.getpid(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            # the ppid is the 2nd field after the parenthesised command
            if int(stat.rsplit(")", 1)[1].split()[1]) != me:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            kids[int(name)] = cmd or stat.split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile
    return kids


def _native_threads():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
        except OSError:
            pass
    return out


def _session_singletons():
    """multiprocessing's resource tracker, started once by the first process pool and
    kept for the session: its pid and the pipe end this process keeps to it."""
    import sys

    tracker = getattr(sys.modules.get("multiprocessing.resource_tracker"), "_resource_tracker", None)
    return {getattr(tracker, "_pid", None)} - {None}, {getattr(tracker, "_fd", None)} - {None}


def _process_singleton_threads():
    """ferroloop's spawner thread: started by the first subprocess, kept for the process
    by design (python/ferroloop/_subprocess.py)."""
    import sys

    t = getattr(sys.modules.get("ferroloop._subprocess"), "_spawner_thread", None)
    return {t.ident, t.native_id} if t is not None else set()


def _snapshot():
    gc.collect()
    return {
        "fds": _fd_table(),
        "pids": _children(),
        "threads": {t.ident: t for t in threading.enumerate()},
        "native": _native_threads(),
    }


def _leaks(before):
    """What is left over since `before`, after waiting (bounded) for what is finishing."""
    _EXEMPT["threads"].update(_process_singleton_threads())
    deadline = time.monotonic() + _GRACE
    for t in threading.enumerate():
        if (
            t.ident not in before["threads"]
            and t.ident not in _EXEMPT["threads"]
            and t is not threading.current_thread()
        ):
            t.join(max(0.0, deadline - time.monotonic()))
    while time.monotonic() < deadline:
        extra = set(_children()) - set(before["pids"]) - _EXEMPT["pids"]
        if not extra:
            break
        time.sleep(0.05)  # polling a real condition: the child's exit, bounded
    now = _snapshot()
    problems = []
    persistent, persistent_fds = _session_singletons()
    fds = {
        fd: target
        for fd, target in now["fds"].items()
        if before["fds"].get(fd) != target and fd not in _EXEMPT["fds"] and fd not in persistent_fds
    }
    if fds:
        problems.append("descriptors: " + ", ".join(f"{fd} -> {t}" for fd, t in sorted(fds.items())))
    pids = {
        p: c
        for p, c in now["pids"].items()
        if p not in before["pids"] and p not in _EXEMPT["pids"] and p not in persistent
    }
    if pids:
        problems.append("child processes: " + ", ".join(f"{p} ({c[:80]})" for p, c in sorted(pids.items())))
    threads = [
        t
        for ident, t in now["threads"].items()
        if ident not in before["threads"] and ident not in _EXEMPT["threads"]
    ]
    if threads:
        problems.append("threads: " + ", ".join(repr(t.name) for t in threads))
    native = {tid: n for tid, n in now["native"].items() if tid not in before["native"]}
    py_native = {t.native_id for t in now["threads"].values()}
    native = {tid: n for tid, n in native.items() if tid not in py_native and tid not in _EXEMPT["threads"]}
    if native:
        problems.append("native threads: " + ", ".join(f"{tid} ({n})" for tid, n in sorted(native.items())))
    return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Resources a session/package fixture creates outlive modules by design: exempt."""
    if fixturedef.scope not in ("session", "package"):
        yield
        return
    before = _snapshot()
    yield
    now = _snapshot()
    _EXEMPT["fds"].update(fd for fd, t in now["fds"].items() if before["fds"].get(fd) != t)
    _EXEMPT["pids"].update(set(now["pids"]) - set(before["pids"]))
    _EXEMPT["threads"].update(set(now["threads"]) - set(before["threads"]))
    _EXEMPT["threads"].update(set(now["native"]) - set(before["native"]))


@pytest.fixture(scope="module", autouse=True)
def leak_gate(request):
    """Fails the module that leaves descriptors, child processes or threads behind."""
    if os.environ.get("FERROLOOP_NO_LEAK_GATE"):
        yield
        return
    before = _snapshot()
    yield
    problems = _leaks(before)
    if problems:
        pytest.fail(f"{request.module.__name__} leaked " + "; ".join(problems), pytrace=False)
