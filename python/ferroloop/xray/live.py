"""The live monitor: a long-running program's loops, watched while they run.

`serve(path)` (or FERROLOOP_XRAY_SOCKET) puts every ferroloop loop of the process in the
x-ray's live mode — native counters only, no Python call per callback (src/trace.rs) —
and answers on a Unix socket (server.py). The blocking watchdog samples the loop thread's
stack while an entry holds the loop; those events are kept here, newest last, and reach
telemetry (telemetry.py). `watch()` is the same without a socket (for `metrics()`).
"""

import collections
import os
import sys
import threading
import time
import traceback
import weakref

from . import hook
from .model import BlockingEvent
from .names import call_at, task_name, user_frame, where

DEFAULT_THRESHOLD = 0.1
ENV_THRESHOLD = "FERROLOOP_XRAY_THRESHOLD"
MAX_EVENTS = 200


class _LoopWatch:
    """What the native side of one loop reports to: `_sample` (watchdog thread, while an
    entry blocks) and `_blocked` (loop thread, once it ended)."""

    def __init__(self, monitor, loop):
        self.monitor = monitor
        self.loop = weakref.ref(loop)
        self.current = None  # the BlockingEvent holding the loop now

    def _sample(self, seq, elapsed):
        loop = self.loop()
        ident = getattr(loop, "_thread_id", None) if loop is not None else None
        frame = sys._current_frames().get(ident) if ident else None
        if frame is None:
            return
        stack = traceback.extract_stack(frame, limit=40)
        event = self.current
        if event is None or event.seq != seq:
            event = self.current = BlockingEvent(seq, time.monotonic() - elapsed)
            import asyncio

            task = asyncio.current_task(loop)  # a dict lookup: fine from this thread
            event.task = task_name(task) if task is not None else "callback"
        if not event.sampled:  # the first sample names the line: the block began there
            fs = user_frame(stack)
            event.where, event.call, event.sampled = where(fs), call_at(fs), True
            event.stack = [(f.filename, f.lineno, f.name, f.line) for f in stack]
            self.monitor._event_started(event)

    def _blocked(self, seq, t0, t1, cpu, subject):
        event = self.current
        if event is None or event.seq != seq:
            event = BlockingEvent(seq, t0)
        self.current = None
        event.t0, event.t1, event.cpu = t0, t1, cpu
        owner = getattr(subject, "__self__", None)
        event.task = (
            task_name(owner)
            if owner is not None and hasattr(owner, "get_coro")
            else (getattr(subject, "__qualname__", None) or type(subject).__name__)
        )
        self.monitor._event_ended(event)


class Monitor:
    def __init__(self, blocking_threshold=DEFAULT_THRESHOLD):
        self.blocking_threshold = blocking_threshold
        self.watches = weakref.WeakKeyDictionary()  # loop -> _LoopWatch
        self.events = collections.deque(maxlen=MAX_EVENTS)
        self.counts = {"blocking": 0, "cpu-bound": 0}
        self.held = {"blocking": 0.0, "cpu-bound": 0.0}
        self.server = None
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # -- loops ---------------------------------------------------------------------------

    def watch(self, loop):
        """Live mode on `loop` (a ferroloop.Loop), unless a recorder already traces it."""
        if loop in self.watches or loop.is_closed():
            return
        w = _LoopWatch(self, loop)
        self.watches[loop] = w
        if not hook.attached(loop):
            loop._xray_start_live(w, self.blocking_threshold)

    def loops(self):
        return [loop for loop in list(self.watches.keys()) if not loop.is_closed()]

    def stop(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for loop in self.loops():
            if not hook.attached(loop):
                loop._xray_stop()
        self.watches.clear()

    # -- blocking events -----------------------------------------------------------------

    def _event_started(self, event):
        pass  # shown live through `current`; counted once it ends

    def _event_ended(self, event):
        with self._lock:
            self.events.append(event)
            self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
            self.held[event.kind] = self.held.get(event.kind, 0.0) + (event.t1 - event.t0)
        from .telemetry import emit

        emit(event)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self, timeout=0.25):
        """Every loop described, asked of each loop's own thread (at most `timeout` s
        each: a blocked loop is described from here, with its blocking event)."""
        from .snapshot import describe_loop

        loops = []
        for loop in self.loops():
            w = self.watches.get(loop)
            current = w.current if w is not None else None
            if loop.is_running() and getattr(loop, "_thread_id", None) != threading.get_ident():
                done, box = threading.Event(), []

                def fill(loop=loop, w=w, box=box, done=done):
                    box.append(describe_loop(loop, "loop", w.current if w is not None else None))
                    done.set()

                try:
                    loop.call_soon_threadsafe(fill)
                except RuntimeError:  # closed meanwhile
                    continue
                if done.wait(timeout) and box:
                    loops.append(box[0])
                    continue
                current = w.current if w is not None else None
                loops.append(
                    describe_loop(loop, f"monitor (the loop did not answer within {timeout}s)", current)
                )
            else:
                loops.append(describe_loop(loop, "monitor", current))
        now = time.monotonic()
        with self._lock:
            events = [e.as_dict(now) for e in self.events]
        return {
            "pid": os.getpid(),
            "argv": sys.argv,
            "now": now,
            "time": time.time(),
            "threshold": self.blocking_threshold,
            "loops": loops,
            "blocking": events,
            "blocking_counts": dict(self.counts),
        }


def _threshold_from_env():
    try:
        return float(os.environ.get(ENV_THRESHOLD, DEFAULT_THRESHOLD))
    except ValueError:
        return DEFAULT_THRESHOLD


def watch(*, blocking_threshold=None):
    """Live mode on every ferroloop loop of the process (the running one and those made
    later), without a socket; returns the Monitor. Idempotent."""
    import asyncio

    mon = hook.monitor()
    if mon is None:
        mon = Monitor(blocking_threshold if blocking_threshold is not None else _threshold_from_env())
        hook.set_monitor(mon)
        import atexit

        # join the watchdog threads before the interpreter finalizes (a thread of ours
        # waiting for the GIL then would be ended under Rust frames)
        atexit.register(mon.stop)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None and hasattr(loop, "_xray_start_live"):
        mon.watch(loop)
    return mon


def serve(path, *, blocking_threshold=None):
    """Answer live snapshots on the Unix socket `path` (mode 0600, this user only; a
    directory or "auto" means a per-PID socket in it: see docs/xray.md). Returns the
    socket's path."""
    from .server import Server, socket_path

    mon = watch(blocking_threshold=blocking_threshold)
    if mon.server is None:
        mon.server = Server(socket_path(path), mon)
    return mon.server.path


def stop():
    """Stop the monitor: close its socket, end live mode."""
    mon = hook.monitor()
    if mon is not None:
        mon.stop()
        hook.set_monitor(None)


def serve_from_env(value):
    """FERROLOOP_XRAY_SOCKET, read at the first loop: a failure is reported, never raised
    into the program."""
    try:
        serve(value)
    except Exception as exc:
        print(f"ferroloop x-ray: cannot serve on {value!r}: {exc}", file=sys.stderr)
