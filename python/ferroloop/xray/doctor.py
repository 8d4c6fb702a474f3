"""Running a program under the x-ray: `python -m ferroloop doctor|trace script.py`."""

import os
import sys

from .._script import run_main
from . import record


def run_program(target, args, *, module=False, blocking_threshold=0.1):
    """Runs a script (or module) on ferroloop while recording; returns (recorder, exit code)."""
    from .. import install

    install()  # the program's own asyncio.run() / new_event_loop() land on ferroloop
    argv = sys.argv
    with record(blocking_threshold=blocking_threshold) as rec:
        try:
            # as `python script.py` runs it: its messages, its exit status (.._script)
            code = run_main(target, args, module=module)
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
