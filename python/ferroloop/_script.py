"""Running a program as `python script.py` / `python -m module` runs it.

`python -m ferroloop run|doctor|trace` hand the user's program to `run_main`, which sets up
what the interpreter would (`sys.argv`, `sys.path[0]`, a fresh `__main__`) and ends the way
the interpreter ends: the same message on stderr and the same exit status for a missing
script, a syntax error, `sys.exit(...)`, an uncaught exception and Ctrl-C, with none of
ferroloop's own frames in the traceback.
"""

import atexit
import builtins
import os
import signal
import sys
import types
from importlib.machinery import SourceFileLoader

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class SignalExit(int):
    """An exit status that means "die by this signal", as python does after an uncaught
    KeyboardInterrupt (its value, 128 + signal, is what a shell would report)."""

    def __new__(cls, signum):
        self = super().__new__(cls, 128 + signum)
        self.signal = signum
        return self


def run_main(target, args, *, module=False):
    """Runs `target` (a path, or a module name with module=True) as __main__ with argv
    `args`; returns the exit status python would have, after printing what it prints."""
    try:
        if module:
            _run_module(target, args)
        else:
            _run_path(target, args)
    except SystemExit as e:
        return _system_exit_status(e)
    except _CannotOpen as e:
        print(
            f"{_program_name()}: can't open file {e.path!r}: [Errno {e.errno}] {e.strerror}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    except BaseException as e:  # noqa: BLE001 - everything the interpreter would report
        _report_uncaught(e)
        return SignalExit(signal.SIGINT) if isinstance(e, KeyboardInterrupt) else 1
    return 0


def die_by_signal(signum):
    """Ends the process as python does after an uncaught KeyboardInterrupt: threads joined,
    atexit handlers run, streams flushed, then killed by the signal itself."""
    shutdown = getattr(__import__("threading"), "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # only if the signal could not end us


class _CannotOpen(Exception):
    def __init__(self, path, err):
        super().__init__(path)
        self.path, self.errno, self.strerror = path, err.errno, err.strerror


def _program_name():
    # What python calls itself in "python: can't open file ...": its own argv[0].
    orig = getattr(sys, "orig_argv", None)
    return orig[0] if orig else sys.executable


def _set_path0(directory):
    # python puts the script's directory first on sys.path (unless -P / -I): it replaces
    # what `python -m ferroloop` (the cwd) or the `ferroloop` launcher (its bin/) put there.
    if getattr(sys.flags, "safe_path", False):
        return
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _fresh_main():
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    return main


def _run_path(target, args):
    path = os.path.abspath(target)
    sys.argv = [target, *args]
    if os.path.isdir(path) or _is_zip(path):
        # `python dir_or_zip`: its __main__ module, found through sys.path[0].
        _set_path0(path)
        _fresh_main()
        _run_module_as_main("__main__", alter_argv=False)
        return
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise _CannotOpen(path, e) from None
    _set_path0(os.path.dirname(path))
    main = _fresh_main()
    main.__file__ = path
    main.__cached__ = None
    main.__loader__ = SourceFileLoader("__main__", path)
    code = compile(source, path, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _run_module(name, args):
    # `python -m name`: sys.path[0] is the cwd, and runpy does the rest as python has it do.
    sys.argv = [name, *args]
    _set_path0(os.getcwd())
    _fresh_main()
    _run_module_as_main(name, alter_argv=True)


def _run_module_as_main(name, *, alter_argv):
    import runpy

    # The function python itself calls for -m (private; run_module is the public fallback).
    as_main = getattr(runpy, "_run_module_as_main", None)
    if as_main is not None:
        as_main(name, alter_argv)
    else:  # pragma: no cover - every CPython 3.11-3.14 has it
        runpy.run_module(name, run_name="__main__", alter_sys=True)


def _is_zip(path):
    import zipfile

    return os.path.isfile(path) and zipfile.is_zipfile(path)


def _system_exit_status(e):
    # python's rule: None is 0, an int is itself, anything else is printed and is 1.
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    stderr = sys.stderr if sys.stderr is not None else sys.__stderr__
    print(code, file=stderr, flush=True)
    return 1


def _report_uncaught(exc):
    tb = exc.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    exc.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = exc
    sys.excepthook(type(exc), exc, tb)
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _is_ours(filename):
    # The leading frames are the command line's own (_cli, _script, xray.doctor).
    return os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
