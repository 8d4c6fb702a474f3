"""What runs in each fresh benchmark process.

    python -m benchmarks._child micro  LOOPSPEC BENCH N
    python -m benchmarks._child server LOOPSPEC KIND ADDR

Every outcome is one JSON line on stdout, so the runner can tell "failed to install"
(stage "import"/"create"), "failed while running" (stage "run"/"start") and a crash (no line
at all, a non-zero exit) apart.
"""

import asyncio
import importlib
import json
import os
import sys
import threading
import time
import traceback


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fail(stage, exc):
    msg = str(exc)
    if not msg:
        # e.g. AbstractEventLoop's bare NotImplementedError: name the method that raised.
        tb = traceback.extract_tb(exc.__traceback__)
        msg = f"in {tb[-1].name}()" if tb else ""
    emit(
        {
            "ok": False,
            "stage": stage,
            "error": f"{type(exc).__name__}: {msg}",
            "traceback": traceback.format_exc(limit=8),
        }
    )
    sys.exit(3)


def load_factory(spec):
    """'module:attr' -> the loop factory (imported, not yet called)."""
    module, _, attr = spec.partition(":")
    mod = importlib.import_module(module)
    factory = mod
    for part in (attr or "new_event_loop").split("."):
        factory = getattr(factory, part)
    return mod, factory


def make_loop(spec):
    try:
        mod, factory = load_factory(spec)
    except BaseException as exc:  # noqa: BLE001 - any import failure is a result to report
        fail("import", exc)
    try:
        loop = factory()
        asyncio.set_event_loop(loop)
    except BaseException as exc:  # noqa: BLE001
        fail("create", exc)
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v

            version = _v(spec.partition(":")[0])
        except Exception:  # noqa: BLE001 - stdlib asyncio has no distribution
            version = sys.version.split()[0]
    return loop, str(version)


def run_micro(spec, bench, n):
    from .micro import BENCHMARKS

    fn = BENCHMARKS[bench][0]
    loop, version = make_loop(spec)
    try:
        loop.run_until_complete(asyncio.sleep(0))  # first-iteration setup out of the timing
        c0, w0 = time.process_time(), time.perf_counter()
        ops = loop.run_until_complete(fn(n))
        w1, c1 = time.perf_counter(), time.process_time()
    except BaseException as exc:  # noqa: BLE001
        fail("run", exc)
    try:
        loop.close()
    except Exception:  # noqa: BLE001 - a close error is not the benchmark's result
        pass
    # process_time is CLOCK_PROCESS_CPUTIME_ID: all threads of this process (helper
    # threads a loop may run count too), user + system.
    emit(
        {
            "ok": True,
            "ops": ops,
            "wall": w1 - w0,
            "cpu": c1 - c0,
            "version": version,
            "loop_type": type(loop).__module__ + "." + type(loop).__qualname__,
        }
    )


def serve_control():
    """Answer the runner on stdin from a plain thread, without touching the loop.

    "cpu" -> this process's CPU seconds (all threads); EOF -> exit at once.
    """
    for line in sys.stdin:
        if line.strip() == "cpu":
            emit({"cpu": time.process_time(), "wall": time.perf_counter()})
    os._exit(0)


def run_server(spec, kind, addr):
    from . import servers

    loop, version = make_loop(spec)
    try:
        bound = loop.run_until_complete(servers.start(kind, addr))
    except BaseException as exc:  # noqa: BLE001
        fail("start", exc)
    emit(
        {
            "ok": True,
            "ready": True,
            "addr": bound,
            "version": version,
            "loop_type": type(loop).__module__ + "." + type(loop).__qualname__,
        }
    )
    threading.Thread(target=serve_control, daemon=True).start()
    try:
        loop.run_forever()
    except BaseException as exc:  # noqa: BLE001
        fail("serve", exc)


def main(argv):
    mode = argv[0]
    if mode == "micro":
        run_micro(argv[1], argv[2], int(argv[3]))
    elif mode == "server":
        run_server(argv[1], argv[2], argv[3])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
