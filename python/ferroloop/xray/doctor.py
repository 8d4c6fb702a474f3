"""Running a program under the x-ray: `python -m ferroloop doctor|trace script.py`."""

import os
import runpy
import sys

from . import record


def run_program(target, args, *, module=False, blocking_threshold=0.1):
    """Runs a script (or module) on ferroloop while recording; returns (recorder, exit code)."""
    from .. import install

    install()  # the program's own asyncio.run() / new_event_loop() land on ferroloop
    code = 0
    argv = sys.argv
    with record(blocking_threshold=blocking_threshold) as rec:
        try:
            if module:
                sys.argv = [target, *args]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                path = os.path.abspath(target)
                sys.argv = [target, *args]
                sys.path.insert(0, os.path.dirname(path))
                runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = argv
    return rec, code


def doctor(target, args=(), *, module=False, blocking_threshold=0.1, html=None, json=None, out=None):
    """Runs the program, then prints what the loop saw: findings with fixes, task classes."""
    out = out or sys.stdout
    rec, code = run_program(target, list(args), module=module, blocking_threshold=blocking_threshold)
    report = rec.report()
    print("\n── ferroloop doctor " + "─" * 50, file=out)
    print(report.format(), file=out)
    if html:
        rec.write_html(html, title=f"ferroloop x-ray: {os.path.basename(target)}")
        print(f"\ntimeline: {html}", file=out)
    if json:
        rec.write_json(json)
    return report, code
