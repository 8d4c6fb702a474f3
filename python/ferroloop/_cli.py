"""`python -m ferroloop COMMAND ...` — one subcommand per module-level `cmd_*` function.

Subcommands: run (any asyncio script on ferroloop), doctor (the same, then a report of the
pitfalls the loop saw), trace (the same, writing a timeline), ps / pstree / top (a live
program's tasks, through its x-ray monitor socket), version (also `--version`). A subcommand
is a `cmd_<name>` function with an optional `add_<name>_arguments`; nothing else to register.
run/doctor/trace hand the program to `_script.run_main`, so it starts and ends as under
`python script.py`; a command returns the exit status.
"""

import argparse
import os
import sys


def add_run_arguments(p):
    p.add_argument("--debug", action="store_true", help="run in asyncio debug mode")
    p.add_argument("-m", dest="module", help="run a module as a script (like python -m)")
    p.add_argument("target", nargs="?", help="the script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def cmd_run(ns):
    """Run an unchanged asyncio program: its asyncio.run() lands on ferroloop."""
    from . import install
    from ._script import run_main

    if ns.debug:
        os.environ["PYTHONASYNCIODEBUG"] = "1"
    target, args, module = _program(ns)
    install()
    return run_main(target, args, module=module)


def _add_program_arguments(p):
    p.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="a callback or task step longer than this blocks the loop (default 0.1)",
    )
    p.add_argument("-m", dest="module", help="run a module as a script (like python -m)")
    p.add_argument("target", nargs="?", help="the script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


# Flags of doctor/trace that may also follow the script (`trace script.py -o t.html`);
# after a `--`, everything goes to the script.
_LATE_FLAGS = {
    "-o": "output",
    "--output": "output",
    "--json": "json",
    "--html": "html",
    "--threshold": "threshold",
}


def _take_late_flags(ns):
    rest, i = [], 0
    while i < len(ns.args):
        arg = ns.args[i]
        if arg == "--":
            rest.extend(ns.args[i + 1 :])
            break
        name, _, value = arg.partition("=")
        dest = _LATE_FLAGS.get(name)
        if dest is not None and hasattr(ns, dest):
            if not value:
                if i + 1 >= len(ns.args):
                    raise SystemExit(f"ferroloop {ns.command}: {name} needs a value")
                value = ns.args[i + 1]
                i += 1
            setattr(ns, dest, float(value) if dest == "threshold" else value)
        else:
            rest.append(arg)
        i += 1
    ns.args = rest


def _program(ns):
    """(target, its argv, whether it is a module) from run/doctor/trace's arguments."""
    if ns.command != "run":
        _take_late_flags(ns)
    if ns.module:
        return ns.module, ([ns.target] if ns.target else []) + ns.args, True
    if not ns.target:
        raise SystemExit(f"ferroloop {ns.command}: give a script or -m MODULE")
    return ns.target, ns.args, False


def add_doctor_arguments(p):
    _add_program_arguments(p)
    p.add_argument("--html", help="also write the timeline to this HTML file")
    p.add_argument("--json", help="also write Chrome trace events (Perfetto) to this file")


def cmd_doctor(ns):
    """Run a script on ferroloop and report its asyncio pitfalls (blocking calls, abandoned tasks, ...)."""
    from .xray.doctor import doctor

    target, args, module = _program(ns)
    report, code = doctor(
        target, args, module=module, blocking_threshold=ns.threshold, html=ns.html, json=ns.json
    )
    return code


def add_trace_arguments(p):
    p.add_argument(
        "-o", "--output", default="trace.html", help="the HTML timeline to write (default trace.html)"
    )
    p.add_argument("--json", help="also write Chrome trace events (Perfetto) to this file")
    _add_program_arguments(p)


def cmd_trace(ns):
    """Run a script on ferroloop and write its timeline (HTML; Chrome trace JSON with --json)."""
    from .xray.doctor import run_program

    target, args, module = _program(ns)
    rec, code = run_program(target, args, module=module, blocking_threshold=ns.threshold)
    rec.write_html(ns.output, title=f"ferroloop x-ray: {os.path.basename(target)}")
    if ns.json:
        rec.write_json(ns.json)
    report = rec.report()
    print(
        f"timeline of {len(report.tasks)} tasks, {report.entries} loop callbacks written to {ns.output}",
        file=sys.stderr,
    )
    return code


def _add_target_argument(p):
    p.add_argument("target", help="the monitor's socket path, or a PID (docs/xray.md: the live monitor)")


add_ps_arguments = add_pstree_arguments = _add_target_argument


def cmd_ps(ns):
    """List a live program's tasks: name, what each waits on, the line it is suspended at."""
    from .xray.client import MonitorError
    from .xray.console import cmd_ps as ps

    try:
        return ps(ns.target)
    except MonitorError as exc:
        raise SystemExit(f"ferroloop ps: {exc}") from None


def cmd_pstree(ns):
    """Show a live program's tasks as a tree: who awaits whom."""
    from .xray.client import MonitorError
    from .xray.console import cmd_pstree as pstree

    try:
        return pstree(ns.target)
    except MonitorError as exc:
        raise SystemExit(f"ferroloop pstree: {exc}") from None


def add_top_arguments(p):
    _add_target_argument(p)
    p.add_argument("--sort", choices=("cpu", "wait", "age", "steps", "name"), default="cpu")
    p.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (default 1)"
    )
    p.add_argument("-n", "--iterations", type=int, help="stop after this many refreshes")


def cmd_top(ns):
    """A live view of a running program: loop lag and load, blocking events as they happen, tasks."""
    from .xray.client import MonitorError
    from .xray.console import cmd_top as top

    try:
        return top(ns.target, interval=ns.interval, sort=ns.sort, iterations=ns.iterations)
    except MonitorError as exc:
        raise SystemExit(f"ferroloop top: {exc}") from None


def _version():
    from . import __version__

    return f"ferroloop {__version__} on Python {sys.version.split()[0]}"


def cmd_version(ns):
    """Print versions: ferroloop, Python."""
    print(_version())
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m ferroloop", description="ferroloop: asyncio's event loop, in Rust"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func in sorted(globals().items()):
        if name.startswith("cmd_"):
            cmd = name[4:]
            p = sub.add_parser(cmd, help=(func.__doc__ or "").strip().splitlines()[0])
            p.set_defaults(func=func)
            adder = globals().get(f"add_{cmd}_arguments")
            if adder:
                adder(p)
    return parser


def main(argv=None):
    from ._script import SignalExit, die_by_signal

    ns = build_parser().parse_args(argv)
    code = ns.func(ns) or 0
    if isinstance(code, SignalExit):  # the program ended on Ctrl-C: end as python would
        die_by_signal(code.signal)
    return code
