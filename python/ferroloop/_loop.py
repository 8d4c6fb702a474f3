"""`ferroloop.Loop`: the asyncio.AbstractEventLoop face of the native core.

What runs per callback (call_soon, timers, the run-once step, fd watchers) lives in
`_ferroloop.CoreLoop`. This class adds what runs once per loop or per run: running-loop
registration, async generator hooks, executors, the exception handler, signals.
"""

import asyncio
import concurrent.futures
import os
import sys
import threading
import warnings
import weakref
from asyncio import events, futures, tasks
from asyncio.log import logger

from ._connect import ConnectMixin
from ._datagram import DatagramMixin
from ._ferroloop import CoreLoop
from ._sendfile import SendfileMixin
from ._serve import ServeMixin
from ._signals import SignalsMixin
from ._sockets import SocketsMixin
from ._subprocess import SubprocessMixin
from ._tls import TlsMixin
from .xray.hook import OFF as XRAY_OFF
from .xray.hook import loop_created as xray_loop_created

_DEBUG_STACK_DEPTH = 10  # asyncio.constants.DEBUG_STACK_DEPTH
_THREAD_JOIN_TIMEOUT = 300  # asyncio.constants.THREAD_JOIN_TIMEOUT (3.12+)
# 3.14 hands a task factory every keyword create_task got (name, context, eager_start) and
# leaves the naming to it; 3.11-3.13 call factory(loop, coro) (context= when one is given)
# and name the task afterwards. Read at each call (tests flip it to hold 3.14's contract).
_FACTORY_GETS_ALL_KWARGS = sys.version_info >= (3, 14)


def _env_debug():
    """asyncio's debug-mode default: -X dev, or PYTHONASYNCIODEBUG set (asked of asyncio
    itself where it has the function, so patches of it reach ferroloop too)."""
    from asyncio import coroutines

    probe = getattr(coroutines, "_is_debug_mode", None)
    if probe is not None:
        return bool(probe())
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


def _stop_loop_when_done(fut):
    # A future that finished with SystemExit/KeyboardInterrupt already stopped the loop by
    # raising out of it; stopping again would make the next run end at once.
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return
    fut.get_loop().stop()


class Loop(
    CoreLoop,
    ConnectMixin,
    ServeMixin,
    DatagramMixin,
    TlsMixin,
    SendfileMixin,
    SocketsMixin,
    SubprocessMixin,
    SignalsMixin,
    asyncio.AbstractEventLoop,
):
    """An asyncio event loop whose scheduling core is written in Rust.

    The mixins are the loop's methods by concept, one file each; none has state or an
    __init__ of its own beyond what this class's __init__ calls (_init_signals). Each
    names in its docstring ("Needs from the loop") what it uses of the others, of this
    class and of CoreLoop; tests/test_loop_contract.py holds them to it. No two of them
    define the same name, so their order decides nothing but speed: CoreLoop first, so a
    lookup of a native method (call_soon, ...) ends at its first step (callgrind: 40
    instructions less per call_soon than with CoreLoop after the mixins).

    The x-ray sees the loop through one object, `_xray_hook` (xray/hook.py: `OFF`, which
    does what asyncio does, until a recorder attaches): once per task made in Python,
    executor job, error context and close."""

    _xray_hook = XRAY_OFF

    def __init__(self):
        super().__init__()
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._task_factory = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._old_agen_hooks = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._init_signals()
        self.set_debug(_env_debug())
        xray_loop_created(self)

    def __repr__(self):
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # -- running -----------------------------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _run_forever_setup(self):
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )
        events._set_running_loop(self)

    def _run_forever_cleanup(self):
        # A loop can only be dropped while it is not running: the handles it shares with
        # others (a task asleep in asyncio.sleep keeps its TimerHandle) become visible to
        # the garbage collector now, once per run (CoreLoop._gc_expose_shared).
        self._gc_expose_shared()
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    def run_forever(self):
        """Run until stop() is called."""
        # Outside the try: a refused run (already running, another loop running) must
        # leave the running loop's state alone.
        self._run_forever_setup()
        try:
            self._run_forever_native()
        finally:
            self._run_forever_cleanup()

    def run_until_complete(self, future):
        """Run until the future (or coroutine, wrapped in a Task) is done; return its result."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # An exception is raised if it does not complete: no "pending task" log needed.
            future._log_destroy_pending = False
        future.add_done_callback(_stop_loop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # The coroutine raised a BaseException; the caller cannot see the task, so
                # mark its exception retrieved.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_stop_loop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self):
        """Close the loop: drop queued callbacks, stop the default executor (without waiting)."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        self._xray_hook.loop_closing(self)
        self._close_signals()
        self._close_native()

        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # -- debug ---------------------------------------------------------------------------

    def set_debug(self, enabled):
        self._set_debug_flag(bool(enabled))
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    # -- futures and tasks ---------------------------------------------------------------

    def _create_task_slow(self, coro, **kwargs):
        """create_task's general case (the native create_task handles the plain one):
        a task factory, the x-ray, debug mode, extra keywords (3.12+: eager_start), which go
        to the Task, or to the factory as the running Python hands them (see
        _FACTORY_GETS_ALL_KWARGS)."""
        self._check_closed()
        if self._task_factory is None:
            task = tasks.Task(coro, loop=self, **kwargs)
            if task._source_traceback:
                del task._source_traceback[-1]
        elif _FACTORY_GETS_ALL_KWARGS:
            task = self._task_factory(self, coro, **kwargs)
        else:
            name = kwargs.pop("name", None)
            context = kwargs.pop("context", None)
            if context is None and not kwargs:
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context, **kwargs)
            if name is not None:
                task.set_name(name)
        self._xray_hook.task_created(task)
        return task

    def set_task_factory(self, factory):
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self):
        return self._task_factory

    # -- async generators ----------------------------------------------------------------

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after loop.shutdown_asyncgens() call",
                ResourceWarning,
                source=self,
                stacklevel=1,  # the default, as asyncio's
            )
        self._asyncgens.add(agen)

    async def shutdown_asyncgens(self):
        """Close every async generator still open (asyncio.run calls this at the end)."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    # -- executors -----------------------------------------------------------------------

    def _check_default_executor(self):
        if self._executor_shutdown_called:
            raise RuntimeError("Executor shutdown has been called")

    def run_in_executor(self, executor, func, *args):
        """Run func(*args) in an executor (the default thread pool if None)."""
        self._check_closed()
        if self.get_debug():
            from ._handles import check_callback

            check_callback(func, "run_in_executor")
        if executor is None:
            self._check_default_executor()
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return self._xray_hook.submit(self, executor, func, args)

    def set_default_executor(self, executor):
        """Any concurrent.futures.Executor; asyncio accepts only thread pools, ferroloop also
        takes a ProcessPoolExecutor or a distributed executor (e.g. Dask's)."""
        if not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(
                "executor must be ThreadPoolExecutor or another "
                f"concurrent.futures.Executor, got {executor!r}"
            )
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        """Shut the default executor down, waiting for its threads (at most `timeout` s)."""
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn(
                f"The executor did not finishing joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, future):
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(_set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # -- errors --------------------------------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the error context through the 'asyncio' logger, as asyncio does."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else False
        lines = [message]
        for key in sorted(context):
            if key in {"message", "exception"}:
                continue
            value = context[key]
            if key == "source_traceback":
                value = "Object created at (most recent call last):\n" + _format_tb(value)
            elif key == "handle_traceback":
                value = "Handle created at (most recent call last):\n" + _format_tb(value)
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Send an error context to the handler set by set_exception_handler, else log it."""
        self._xray_hook.exception_context(context)
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            # 3.12+: the handler runs in the context of the object that failed.
            owner = context.get("task") or context.get("future") or context.get("handle")
            ctx = owner.get_context() if owner is not None and hasattr(owner, "get_context") else None
            if ctx is not None and hasattr(ctx, "run"):
                ctx.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {"message": "Unhandled error in exception handler", "exception": exc, "context": context}
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an unexpected "
                    "error in custom exception handler",
                    exc_info=True,
                )


def _format_tb(frames):
    import traceback

    return "".join(traceback.format_list(frames)).rstrip()


def _set_result_unless_cancelled(fut, result):
    if not fut.cancelled():
        fut.set_result(result)
