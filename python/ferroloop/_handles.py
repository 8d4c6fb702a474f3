"""The Python side of native handles (src/handles.rs): what runs once per error, per repr
or per debug event, never per callback."""

import inspect
import sys
from asyncio import coroutines, format_helpers, tasks
from asyncio.log import logger

from ._ferroloop import TimerHandle

# asyncio's private formatter of "callback(args) at file:line" (every 3.11-3.14 has it);
# 3.13 added `debug=` (argument reprs are only shown in debug mode); 3.11/3.12 always show.
_format_source = getattr(format_helpers, "_format_callback_source", None)
_FORMAT_HAS_DEBUG = _format_source is not None and "debug" in inspect.signature(_format_source).parameters


def _format_callback(callback, args, loop):
    if _FORMAT_HAS_DEBUG:
        return _format_source(callback, args, debug=loop.get_debug())
    if _format_source is not None:
        return _format_source(callback, args)
    return f"{callback!r}{args!r}"  # pragma: no cover - an asyncio without the helper


# asyncio's own test for "a coroutine function" (3.14's coroutines._iscoroutinefunction):
# inspect's, or a callable carrying asyncio's marker (mock.AsyncMock does). The public
# asyncio.iscoroutinefunction is deprecated in 3.14 and goes in 3.16.
_IS_COROUTINE_MARK = getattr(coroutines, "_is_coroutine", None)


def iscoroutinefunction(func):
    return inspect.iscoroutinefunction(func) or (
        _IS_COROUTINE_MARK is not None and getattr(func, "_is_coroutine", None) is _IS_COROUTINE_MARK
    )


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle.cancelled():
        info.append("cancelled")
    if isinstance(handle, TimerHandle):
        info.insert(2 if handle.cancelled() else 1, f"when={handle.when()}")
    callback = handle._callback
    if callback is not None:
        info.append(_format_callback(callback, handle._args, handle._loop))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def report_callback_error(handle, exc):
    """asyncio's Handle._run error path: hand the error to the loop's exception handler."""
    cb = _format_callback(handle._callback, handle._args, handle._loop)
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    tb = handle._source_traceback
    if tb:
        context["source_traceback"] = tb
    handle._loop.call_exception_handler(context)


def format_handle(handle):
    """How asyncio names a handle in its slow-callback warning: the task, if it is a step."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return repr(owner)
    return str(handle)


def log_slow_callback(handle, seconds):
    logger.warning("Executing %s took %.3f seconds", format_handle(handle), seconds)


def check_callback(callback, method):
    """asyncio's BaseEventLoop._check_callback, same messages."""
    if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")


def extract_stack():
    """Where a handle was created, for debug mode (the caller of the native method)."""
    return format_helpers.extract_stack(sys._getframe(1))
