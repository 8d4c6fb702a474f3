"""`python -m ferroloop COMMAND ...` — one subcommand per module-level `cmd_*` function.

Subcommands: run (any asyncio script on ferroloop). Later ones (doctor, trace, demo) add a
`cmd_<name>` function and an `add_<name>_arguments` here; nothing else changes.
"""

import argparse
import os
import runpy
import sys


def add_run_arguments(p):
    p.add_argument("--debug", action="store_true", help="run in asyncio debug mode")
    p.add_argument("-m", dest="module", help="run a module as a script (like python -m)")
    p.add_argument("target", nargs="?", help="the script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def cmd_run(ns):
    """Run an unchanged asyncio program: its asyncio.run() lands on ferroloop."""
    from . import install

    if ns.debug:
        os.environ["PYTHONASYNCIODEBUG"] = "1"
    install()
    if ns.module:
        args = ([ns.target] if ns.target else []) + ns.args
        sys.argv = [ns.module, *args]
        runpy.run_module(ns.module, run_name="__main__", alter_sys=True)
        return 0
    if not ns.target:
        raise SystemExit("ferroloop run: give a script or -m MODULE")
    path = os.path.abspath(ns.target)
    sys.argv = [ns.target, *ns.args]
    sys.path.insert(0, os.path.dirname(path))
    runpy.run_path(path, run_name="__main__")
    return 0


def add_demo_arguments(p):
    from .demo.args import add_arguments  # argparse only: the demo loads when it runs

    add_arguments(p)


def cmd_demo(ns):
    """The tutorial's image program (download, detect edges) on ferroloop and stock asyncio."""
    from .demo.main import run

    return run(ns)


def cmd_version(ns):
    """Print versions: ferroloop, Python."""
    from . import __version__

    print(f"ferroloop {__version__} on Python {sys.version.split()[0]}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ferroloop", description="ferroloop: asyncio's event loop, in Rust")
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
    ns = build_parser().parse_args(argv)
    return ns.func(ns) or 0
