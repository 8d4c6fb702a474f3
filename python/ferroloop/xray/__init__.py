"""ferroloop's x-ray: the loop explains your program.

    from ferroloop import xray
    with xray.record(blocking_threshold=0.1) as rec:
        ferroloop.run(main())
    print(rec.report().format())       # tasks (IO-bound / CPU-bound / blocking) and findings
    rec.write_html("trace.html")       # the timeline, one lane per task
    rec.write_json("trace.json")       # the same as Chrome trace events (Perfetto)

    xray.serve("/run/app.sock")        # live: python -m ferroloop ps|pstree|top /run/app.sock
    xray.metrics()                     # the live counters as Prometheus text

Every ferroloop loop created inside `record()` is recorded. From the command line:
`python -m ferroloop doctor script.py` and `python -m ferroloop trace script.py -o trace.html`.
Off (the default) the loop pays one atomic test per callback for all of this.

The modules: model (the data types, a leaf), names (readable task names), hook (the door
the loop talks through), recorder, analysis, export, doctor (the post-mortem side), live,
server, client, console, telemetry (the live side). Imported lazily: `import ferroloop`
loads only `hook`.
"""

import contextlib

__all__ = (
    "Recorder",
    "Report",
    "Finding",
    "TaskStats",
    "BlockingEvent",
    "record",
    "serve",
    "watch",
    "stop",
    "metrics",
)

_LAZY = {
    "Recorder": "recorder",
    "Report": "analysis",
    "Finding": "model",
    "TaskStats": "model",
    "BlockingEvent": "model",
    "serve": "live",
    "watch": "live",
    "stop": "live",
    "metrics": "telemetry",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


@contextlib.contextmanager
def record(*, blocking_threshold=0.1, hooks=True):
    """Record every ferroloop loop created inside the block; yields the Recorder."""
    from . import hook
    from .recorder import Recorder

    rec = Recorder(blocking_threshold=blocking_threshold, hooks=hooks)
    hook.add_recorder(rec)
    rec.start_hooks()
    try:
        yield rec
    finally:
        hook.remove_recorder(rec)
        import gc

        gc.collect()  # let abandoned tasks and coroutines report while we still listen
        rec.stop()
