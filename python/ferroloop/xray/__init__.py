"""ferroloop's x-ray: the loop explains your program.

    from ferroloop import xray
    with xray.record(blocking_threshold=0.1) as rec:
        ferroloop.run(main())
    print(rec.report().format())       # tasks (IO-bound / CPU-bound / blocking) and findings
    rec.write_html("trace.html")       # the timeline, one lane per task
    rec.write_json("trace.json")       # the same as Chrome trace events (Perfetto)

Every ferroloop loop created inside `record()` is recorded. From the command line:
`python -m ferroloop doctor script.py` and `python -m ferroloop trace script.py -o trace.html`.
Off (the default) the loop pays one atomic test per callback for all of this.
"""

import contextlib

from .. import _loop
from .analysis import Finding, Report, TaskStats
from .recorder import Recorder

__all__ = ("Recorder", "Report", "Finding", "TaskStats", "record")


@contextlib.contextmanager
def record(*, blocking_threshold=0.1, hooks=True):
    """Record every ferroloop loop created inside the block; yields the Recorder."""
    rec = Recorder(blocking_threshold=blocking_threshold, hooks=hooks)
    previous = _loop.ACTIVE_RECORDER[0]
    _loop.ACTIVE_RECORDER[0] = rec
    rec.start_hooks()
    try:
        yield rec
    finally:
        _loop.ACTIVE_RECORDER[0] = previous
        import gc

        gc.collect()  # let abandoned tasks and coroutines report while we still listen
        rec.stop()
