"""Names a person can read, and the program's own frames.

asyncio names a task `Task-N`; what a reader wants is what it runs. A task the program
named keeps its name; a default-named one is shown as its coroutine's qualified name and
the number (`RequestResponseCycle.run_asgi#12`, `handle_slow#9`). Leaf: imports only the
standard library."""

import ast
import asyncio
import functools
import linecache
import os
import re
import sys
import threading

_DEFAULT_NAME = re.compile(r"Task-(\d+)\Z")

_PKG_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (asyncio, sys.modules[__name__.rsplit(".", 2)[0]])
)
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__)) + os.sep
FERROLOOP_DIR = _PKG_DIRS[1]


def coro_name(coro):
    """A coroutine's (or generator's, or awaitable's) qualified name."""
    return getattr(coro, "__qualname__", None) or type(coro).__qualname__


def readable(name, coro):
    """`name` if the program chose it, else the coroutine's name and asyncio's number."""
    m = _DEFAULT_NAME.match(name)
    if m is None:
        return name
    return f"{coro_name(coro)}#{m.group(1)}"


def task_name(task):
    """A task's readable name (see the module comment)."""
    try:
        return readable(task.get_name(), task.get_coro())
    except Exception:  # a foreign task type without get_name/get_coro
        return repr(task)


@functools.lru_cache(maxsize=4096)
def is_program_file(filename):
    """Code of the program itself (or its libraries), not asyncio, ferroloop or the stdlib."""
    if filename.startswith("<"):
        return False
    fname = os.path.abspath(filename)
    return not fname.startswith(_PKG_DIRS) and not fname.startswith(_STDLIB_DIR)


def user_frame(frames):
    """The innermost frame of the program itself (not asyncio, ferroloop, the stdlib)."""
    for fs in reversed(frames):
        if is_program_file(fs.filename):
            return fs
    return frames[-1] if frames else None


def caller_where(frame, limit=30):
    """(filename, lineno, function) of the innermost program frame at or above `frame`:
    a walk over frame objects, no source read (the cheap form of traceback.extract_stack)."""
    first = None
    while frame is not None and limit > 0:
        code = frame.f_code
        if first is None:
            first = (code.co_filename, frame.f_lineno, code.co_name)
        if is_program_file(code.co_filename):
            return (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
        limit -= 1
    return first


def call_at(fs):
    """The call made on a source line, e.g. 'time.sleep' for `time.sleep(delay)`."""
    if fs is None:
        return "?"
    line = (fs.line or linecache.getline(fs.filename, fs.lineno)).strip()
    try:
        tree = ast.parse(line.removeprefix("await ").strip() or "pass")
    except SyntaxError:
        return line or "?"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            return ast.unparse(node.func)
    return line or "?"


def where(fs):
    """file.py:LINE of a frame summary ("?" for none)."""
    if fs is None:
        return "?"
    return f"{os.path.basename(fs.filename)}:{fs.lineno}"
