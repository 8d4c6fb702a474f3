"""./dev suites [NAME...]: the libraries' own test suites on asyncio and on ferroloop.

    python -m suites [NAME...] [--subset ci|full] [--loops asyncio,ferroloop[,uvloop]]

Exit status 1 if a test passed on asyncio and failed, errored or hung on ferroloop without
an entry in suites/expectations.txt (or a run never made a ferroloop loop).
"""

import argparse
import json
import signal
import sys
import time

from . import compare, runner
from .libraries import LIBRARIES

OUT = runner.ROOT / "artifacts" / "suites"


def main(argv=None):
    # SIGTERM (a CI timeout, a kill) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(prog="python -m suites", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"libraries (default: all): {', '.join(LIBRARIES)}")
    ap.add_argument("--subset", choices=("ci", "full"), default="full")
    ap.add_argument(
        "--loops", default="asyncio,ferroloop", help="comma-separated; asyncio first (the control)"
    )
    ap.add_argument("--python", default=sys.executable, help="the interpreter the suite venvs are made from")
    ap.add_argument("--tests", nargs="+", help="run only these paths/node ids of the library (with one NAME)")
    args = ap.parse_args(argv)
    loops = args.loops.split(",")
    if loops[0] != "asyncio":
        ap.error("the first loop is the control and must be asyncio")
    names = args.names or list(LIBRARIES)
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        ap.error(f"unknown libraries: {unknown}")
    expectations = compare.load_expectations()
    python = _base_python(args.python)
    summary, failed = {}, False
    for name in names:
        lib = LIBRARIES[name]
        if not lib.has_tests_in_sdist:
            runner.log(f"{lib.pin}: its sdist ships no tests; not run")
            summary[name] = {"version": lib.version, "note": "sdist ships no tests"}
            continue
        tree = runner.sources(lib)
        py = runner.venv(lib, python, loops)
        paths = args.tests or list(lib.ci if args.subset == "ci" else lib.full)
        budget = lib.ci_budget if args.subset == "ci" else lib.budget
        entry = summary[name] = {"version": lib.version, "subset": args.subset, "paths": paths, "loops": {}}
        with runner.Servers(lib.servers) as servers:
            results = {}
            for loop in loops:
                junit, stats, wall, note = runner.run(lib, loop, py, tree, paths, OUT, servers.env, budget)
                results[loop] = compare.outcomes(junit)
                entry["loops"][loop] = {
                    "counts": compare.counts(results[loop]),
                    "wall_s": round(wall, 1),
                    "stats": stats,
                    "note": note,
                }
                runner.log(f"{name} on {loop}: {_fmt(entry['loops'][loop])}")
                if note:
                    failed = True
                if loop != "asyncio" and (stats is None or stats["ran"] == 0):
                    runner.log(f"{name} on {loop}: no {loop} loop ever ran: the run proves nothing")
                    failed = True
        for loop in loops[1:]:
            if loop != "ferroloop":
                continue
            regs = compare.regressions(results["asyncio"], results[loop])
            listed = {t: o for t, o in regs.items() if (name, t) in expectations}
            unlisted = {t: o for t, o in regs.items() if (name, t) not in expectations}
            stale = sorted(
                t for (lib_name, t) in expectations if lib_name == name and results[loop].get(t) == "passed"
            )
            entry["regressions"] = {"listed": listed, "unlisted": unlisted, "stale": stale}
            for t, o in sorted(unlisted.items()):
                runner.log(f"REGRESSION {name} {t}: passed on asyncio, {o} on {loop}")
            for t in stale:
                runner.log(f"note: {name} {t} is listed in expectations.txt but passes now")
            failed |= bool(unlisted)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = OUT / f"summary-{stamp}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(_table(summary, loops))
    runner.log(
        f"summary: {out.relative_to(runner.ROOT)}; logs and junit XML in {OUT.relative_to(runner.ROOT)}"
    )
    return 1 if failed else 0


def _base_python(python):
    """The interpreter behind a venv (suite venvs are made from the base, not nested)."""
    import subprocess

    return subprocess.run(
        [python, "-c", "import sys; print(sys._base_executable)"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _fmt(loop_entry):
    c = loop_entry["counts"]
    extra = f" ({loop_entry['note']})" if loop_entry["note"] else ""
    return ", ".join(f"{v} {k}" for k, v in c.items() if v) + f" in {loop_entry['wall_s']} s" + extra


def _table(summary, loops):
    rows = [
        "",
        "| library | loop | passed | failed | errors | skipped | hung | regressions (listed/unlisted) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary.items():
        if "loops" not in entry:
            rows.append(f"| {name} {entry['version']} | - | {entry['note']} | | | | | |")
            continue
        for loop in loops:
            e = entry["loops"].get(loop)
            if e is None:
                continue
            c = e["counts"]
            regs = ""
            if loop == "ferroloop" and "regressions" in entry:
                r = entry["regressions"]
                regs = f"{len(r['listed'])}/{len(r['unlisted'])}"
            rows.append(
                f"| {name} {entry['version']} | {loop} | {c['passed']} | {c['failed']} | {c['error']} | "
                f"{c['skipped']} | {c['hung']} | {regs} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
