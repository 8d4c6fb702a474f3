"""The recorder: collects what the loop reports (src/trace.rs) and what the Python face
sees once per task, executor job or error. Nothing here runs unless a recorder is
attached; then every loop entry costs one Python call into `_entry`.
"""

import asyncio
import functools
import os
import sys
import threading
import time
import traceback
import warnings
import weakref

from . import hook

# the origin constants are re-exported: they were defined here before model.py
from .model import DATAGRAM, FD, SOON, STREAM, THREAD, TIMER, Entry, Job, TaskInfo  # noqa: F401
from .names import _PKG_DIRS, _STDLIB_DIR, FERROLOOP_DIR, caller_where, task_name


@functools.lru_cache(maxsize=1024)
def _in_ferroloop(filename):
    return os.path.abspath(filename).startswith(FERROLOOP_DIR)


def _timed_call(func, args):
    """Runs an executor job and reports where and when it ran (picklable: top level)."""
    start = time.monotonic()
    try:
        return func(*args), (os.getpid(), threading.current_thread().name, start, time.monotonic())
    except BaseException as exc:
        exc.__ferroloop_job__ = (os.getpid(), threading.current_thread().name, start, time.monotonic())
        raise


class Recorder(hook.LoopHook):
    """Records what ferroloop loops do while attached: the native entries (src/trace.rs)
    and, as the loop's hook (xray/hook.py), its tasks, executor jobs, errors and close.

    blocking_threshold: a loop entry longer than this (seconds) is a blocking finding; the
    watchdog samples the stack while it blocks. hooks: also watch for never-awaited
    coroutines and for gather() failures that leave tasks running (doctor mode).
    """

    def __init__(self, *, blocking_threshold=0.1, hooks=True, max_entries=2_000_000):
        self.blocking_threshold = blocking_threshold
        self.hooks = hooks
        self.max_entries = max_entries
        self._raw = []  # what _entry received, turned into Entry objects on demand
        self._entries = None
        self.truncated = False
        self.timers = {}  # seq -> (armed_at, when)
        self.samples = {}  # seq -> [(elapsed, [FrameSummary])]
        self._tasks = {}  # id(task) -> TaskInfo (see the `tasks` property)
        self._born = []  # (task, created_at, where) not yet turned into TaskInfo
        self.jobs = []
        self.unawaited = []  # (message, FrameSummary or None)
        self.exceptions = []  # loop exception-handler contexts worth reporting
        self.gather_failures = []  # (exception repr, where, [TaskInfo still running])
        self.loops = []
        self.loop_thread = None
        self.started = time.monotonic()
        self.stopped = None
        self._main_tasks = {}  # id(loop) -> the first task made on it (asyncio.run's main)
        self._saved = []
        # Seconds the recorder itself spent inside the entry now running (its per-task
        # bookkeeping): taken off that entry's time, so the x-ray's own cost is never
        # reported as the program's (a step that made 2,000 tasks is not "cpu-bound"
        # because recording them was slow).
        self._own = 0.0

    # -- attaching -----------------------------------------------------------------------

    def attach(self, loop):
        """Start recording `loop` (a ferroloop.Loop)."""
        hook.attach(loop, self)
        self.loop_thread = threading.get_ident()
        loop._xray_start(self, self.blocking_threshold)
        self.loops.append(weakref.ref(loop))

    def detach(self, loop):
        if not loop.is_closed():
            loop._xray_stop()
        hook.detach(loop)

    def start_hooks(self):
        if not self.hooks:
            return
        self._saved.append(("depth", sys.get_coroutine_origin_tracking_depth()))
        # Three frames: the innermost one is where a coroutine was made (all the
        # never-awaited finding names); each frame more costs every coroutine created
        # (2,000 coroutines in one step: ~1 ms at depth 3, ~10 ms at depth 10).
        sys.set_coroutine_origin_tracking_depth(max(3, sys.get_coroutine_origin_tracking_depth()))
        self._saved.append(("showwarning", warnings.showwarning))
        self._saved.append(("filters", warnings.filters[:]))
        warnings.filterwarnings("always", message="coroutine .* was never awaited", category=RuntimeWarning)
        original_show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, RuntimeWarning) and "was never awaited" in str(message):
                self._never_awaited(str(message), filename, lineno)
            return original_show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        original_gather = asyncio.gather
        self._saved.append(("gather", original_gather))
        recorder = self

        @functools.wraps(original_gather)
        def gather(*aws, return_exceptions=False):
            outer = original_gather(*aws, return_exceptions=return_exceptions)
            if not return_exceptions:
                start = time.perf_counter()
                fname, lineno, func = caller_where(sys._getframe(1))
                where = traceback.FrameSummary(fname, lineno, func, lookup_line=False)
                children = list(getattr(outer, "_children", ()))
                outer.add_done_callback(lambda fut: recorder._gather_done(fut, children, where))
                recorder._own += time.perf_counter() - start
            return outer

        asyncio.gather = gather
        asyncio.tasks.gather = gather

    def stop_hooks(self):
        for kind, value in reversed(self._saved):
            if kind == "depth":
                sys.set_coroutine_origin_tracking_depth(value)
            elif kind == "showwarning":
                warnings.showwarning = value
            elif kind == "filters":
                warnings.filters[:] = value
            elif kind == "gather":
                asyncio.gather = value
                asyncio.tasks.gather = value
        self._saved.clear()

    def _unretrieved(self):
        """Tasks that failed and whose exception nobody retrieved (asyncio would log it when
        the task is collected — we hold the tasks, so we look now)."""
        for info in self.tasks.values():
            task = info.task
            if task.done() and not task.cancelled() and getattr(task, "_log_traceback", False):
                if not any(i is info for _, _, i in self.exceptions):
                    self.exceptions.append(
                        ("Task exception was never retrieved", getattr(task, "_exception", None), info)
                    )

    def stop(self):
        self._unretrieved()
        for ref in self.loops:
            loop = ref()
            if loop is not None:
                self.detach(loop)
        self.stop_hooks()
        self.stopped = time.monotonic()

    # -- reports from the native loop ------------------------------------------------------

    def _entry(self, seq, origin, cause, subject, t0, t1, cpu):
        # Called once per loop callback: keep it to an append.
        if self._own:
            own, self._own = self._own, 0.0
            t1 = max(t0, t1 - own)
            cpu = max(0.0, min(cpu - own, t1 - t0))
        raw = self._raw
        if len(raw) < self.max_entries:
            raw.append((seq, origin, cause, subject, t0, t1, cpu))
        else:
            self.truncated = True

    @property
    def entries(self):
        """seq -> Entry, built from the raw reports (and each task's steps with them)."""
        if self._entries is None or len(self._entries) != len(self._raw):
            self._entries = {}
            for info in self.tasks.values():
                info.steps = []
            for raw in self._raw:
                self._materialize(*raw)
            end = self.stopped or time.monotonic()
            for info in self.tasks.values():
                self._settle(info, end)
        return self._entries

    def _materialize(self, seq, origin, cause, subject, t0, t1, cpu):
        owner = getattr(subject, "__self__", None)
        task = owner if isinstance(owner, asyncio.Task) else None
        # the recorder's own callbacks (task-done bookkeeping, executor plumbing)
        internal = owner is self or getattr(subject, "__module__", None) == __name__
        if task is not None:
            label = self._task_info(task).name
        elif origin in (STREAM, DATAGRAM):
            label = type(subject).__name__
        else:
            label = getattr(subject, "__qualname__", None) or type(subject).__name__
        e = Entry(seq, origin, cause, t0, t1, cpu, task, label, internal)
        self._entries[seq] = e
        if task is not None:
            self._task_info(task).steps.append(e)

    def _timer_armed(self, seq, when, handle):
        self.timers[seq] = (time.monotonic(), when)

    def _sample(self, seq, elapsed):
        """Called by the watchdog thread while entry `seq` holds the loop."""
        if self.loop_thread is None:
            return
        frame = sys._current_frames().get(self.loop_thread)
        if frame is None:
            return
        stack = traceback.extract_stack(frame, limit=40)
        samples = self.samples.setdefault(seq, [])
        if len(samples) < 20:
            samples.append((elapsed, stack))
        else:
            samples[-1] = (elapsed, stack)

    # -- reports from the Python face ------------------------------------------------------

    @property
    def tasks(self):
        """id(task) -> TaskInfo. A task's birth is noted cheaply while the program runs (it
        may make thousands in one step) and turned into a TaskInfo when asked."""
        while self._born:
            born, self._born = self._born, []
            for task, created_at, where in born:
                self._new_task_info(task, created_at, where)
        return self._tasks

    def _task_info(self, task):
        info = self.tasks.get(id(task))
        if info is None or info.task is not task:
            info = self._new_task_info(task, time.monotonic(), None)
        return info

    def task_created(self, task, where="caller"):
        # Once per task, inside the program's step: a frame walk (no source read) and an
        # append; the time it takes is the recorder's own (see _own).
        start = time.perf_counter()
        if where == "caller":
            where = caller_where(sys._getframe(2))
        loop_id = id(task.get_loop())
        if loop_id in self._main_tasks:
            self._born.append((task, time.monotonic(), where))
        else:  # the loop's first task, asyncio.run's main: its end is watched as it happens
            self._main_tasks[loop_id] = self._new_task_info(task, time.monotonic(), where)
            task.add_done_callback(self._task_done)
        self._own += time.perf_counter() - start

    def _new_task_info(self, task, created_at, where):
        if isinstance(where, tuple):
            where = traceback.FrameSummary(*where, lookup_line=False)
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        # the loop's own housekeeping (shutdown_asyncgens, shutdown_default_executor)
        internal = code is not None and _in_ferroloop(code.co_filename)
        info = TaskInfo(
            task,
            task_name(task),
            getattr(coro, "__qualname__", repr(coro)),
            created_at,
            where,
            internal=internal,
        )
        self._tasks[id(task)] = info
        return info

    def _settle(self, info, end=None):
        """A task's end as it stands now: outcome, and when (its last step's end)."""
        task = info.task
        info.name = task_name(task)
        if not task.done():
            return
        if info.done_at is None:
            info.done_at = info.steps[-1].t1 if info.steps else end
        # Look, don't touch: task.exception() would mark the error as retrieved and hide
        # the "never retrieved" finding (and asyncio's own log of it).
        exc = None if task.cancelled() else getattr(task, "_exception", None)
        if task.cancelled():
            info.outcome = "cancelled"
        elif exc is not None:
            info.outcome = "exception"
            info.exception = repr(exc)
        else:
            info.outcome = "result"

    def _task_done(self, task):
        """asyncio.run's main task ended: what is still pending now was forgotten (asyncio.run
        cancels it next)."""
        info = self.tasks.get(id(task))
        if info is None:
            return
        info.done_at = time.monotonic()
        for other in self.tasks.values():
            if other is not info and not other.task.done() and other.task.get_loop() is task.get_loop():
                other.pending_at_main_exit = True

    def submit(self, loop, executor, func, args):
        import concurrent.futures

        kind = (
            "process"
            if isinstance(executor, concurrent.futures.ProcessPoolExecutor)
            else "thread"
            if isinstance(executor, concurrent.futures.ThreadPoolExecutor)
            else "other"
        )
        name = getattr(func, "__qualname__", None) or repr(func)
        if isinstance(func, functools.partial):
            inner = func.args[1] if func.func is getattr(func.func, "__self__", object()) else func.func
            name = getattr(inner, "__qualname__", name)
            if getattr(func.func, "__name__", "") == "run" and func.args:  # to_thread: ctx.run(f, ...)
                name = getattr(func.args[0], "__qualname__", name)
        inner = asyncio.wrap_future(executor.submit(_timed_call, func, args), loop=loop)
        outer = loop.create_future()

        def done(fut):
            if fut.cancelled():
                outer.cancel()
                return
            exc = fut.exception()
            meta = getattr(exc, "__ferroloop_job__", None) if exc is not None else fut.result()[1]
            if meta is not None:
                pid, thread, t0, t1 = meta
                lane = f"process {pid}" if kind == "process" or pid != os.getpid() else f"thread {thread}"
                self.jobs.append(Job(kind, lane, name, t0, t1))
            if outer.cancelled():
                return
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(fut.result()[0])

        def cancel_inner(fut):
            if fut.cancelled():
                inner.cancel()

        inner.add_done_callback(done)
        outer.add_done_callback(cancel_inner)
        return outer

    def exception_context(self, context):
        message = context.get("message", "")
        if "never retrieved" in message or "destroyed but it is pending" in message:
            task = context.get("future") or context.get("task")
            info = self.tasks.get(id(task)) if task is not None else None
            if info is None or not any(i is info for _, _, i in self.exceptions):
                self.exceptions.append((message, context.get("exception"), info))

    def _never_awaited(self, message, filename, lineno):
        where = None
        lines = message.splitlines()
        # With origin tracking on, the message ends with where the coroutine was created.
        for i, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("File "):
                try:
                    fname = stripped.split('"')[1]
                    lno = int(stripped.split("line ")[1].split(",")[0])
                    func = stripped.rsplit("in ", 1)[1]
                except (IndexError, ValueError):
                    continue
                code = lines[i + 1].strip() if i + 1 < len(lines) else None
                where = traceback.FrameSummary(fname, lno, func, line=code)
        if where is not None and os.path.abspath(where.filename).startswith(_PKG_DIRS + (_STDLIB_DIR,)):
            where = None
        self.unawaited.append((lines[0], where or traceback.FrameSummary(filename, lineno, "?")))

    def _gather_done(self, fut, children, where):
        if fut.cancelled() or fut.exception() is None:
            return
        running = [self._task_info(c) for c in children if isinstance(c, asyncio.Task) and not c.done()]
        if running:
            self.gather_failures.append((repr(fut.exception()), where, running))

    def loop_closing(self, loop):
        for info in self.tasks.values():
            if not info.task.done():
                info.cancelled_at_shutdown = True
        # Stop the native side; keep listening to the Python face (tasks collected later
        # still report "exception was never retrieved" through it).
        loop._xray_stop()

    # -- results ---------------------------------------------------------------------------

    def report(self):
        from .analysis import build_report

        return build_report(self)

    def chrome_trace(self):
        from .export import chrome_trace

        return chrome_trace(self)

    def write_json(self, path):
        import json

        with open(path, "w") as f:
            json.dump(self.chrome_trace(), f)

    def write_html(self, path, title="ferroloop x-ray"):
        from .export import html_page

        with open(path, "w") as f:
            f.write(html_page(self.chrome_trace(), title=title))
