"""python -m conformance {run,check,refresh,report,ci} — see conformance/README.md."""

import argparse
import json
import os
import platform
import sys

from . import candidate, expectations, report, runner, subsets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "artifacts", "conformance")
PYVER = "py" + ".".join(platform.python_version_tuple()[:2])


def results_path(label, subset):
    return os.path.join(ARTIFACTS, f"{label}-{PYVER}-{subset}.json")


def _load(path):
    with open(path) as f:
        return json.load(f)


def cmd_run(args):
    label = candidate.resolve(args.loop)[0]
    only = None
    if args.test:
        only = {}
        for t in args.test:
            only.setdefault(t.split(".")[0], set()).add(t)
    modules = sorted(only) if only else (args.module or subsets.modules(args.subset))
    subset = args.subset if not (args.module or args.test) else "selected"
    out = args.out or results_path(label, subset)
    log_dir = os.path.join(ARTIFACTS, "logs", f"{label}-{PYVER}-{subset}")
    print(
        f"conformance: {len(modules)} modules of test.test_asyncio on {args.loop} "
        f"(Python {platform.python_version()}, {args.jobs} jobs, {args.timeout:.0f}s a test)",
        flush=True,
    )
    results = runner.run(
        args.loop,
        modules,
        jobs=args.jobs,
        timeout=args.timeout,
        module_timeout=args.module_timeout,
        out_path=out,
        log_dir=log_dir,
        subset=subset,
        only=only,
        budget=args.budget,
        echo=lambda s: print(s, flush=True),
    )
    print(
        f"conformance: {len(results['tests'])} tests in {results['duration']}s; results in "
        f"{os.path.relpath(out)}, logs in {os.path.relpath(log_dir)}"
    )
    if args.check:
        return _check(results, args.expectations)
    return 0


def _check(results, path):
    entries = expectations.load(path)
    diff = expectations.compare(results, entries)
    for w in diff["warnings"]:
        print(f"  note: {w}")
    ok = True
    for test, rec in diff["unexpected_failures"]:
        ok = False
        detail = (rec.get("detail") or "").strip().splitlines()
        # A failure's last line is its exception; a hang's first lines say where it waited.
        shown = detail[:3] if rec["outcome"] == "hung" else detail[-1:]
        if rec.get("unimplemented"):
            shown = [f"NotImplementedError: loop.{rec['unimplemented']}()"]
        kind = {"failed": "FAILURE", "hung": "HANG", "crashed": "CRASH"}[rec["outcome"]]
        print(f"UNEXPECTED {kind}: {test}" + "".join(f"\n    {line}" for line in shown))
    for test, _rec in diff["unexpected_passes"]:
        ok = False
        print(f"UNEXPECTED PASS: {test} (listed as {entries[test].category}: remove its line)")
    for msg in diff["bad_entries"]:
        ok = False
        print(f"BAD ENTRY: {msg}")
    for module, info in sorted(results["modules"].items()):
        if info["status"] != "ok":
            ok = False
            print(f"INCOMPLETE: {module}: {info['status']} ({'; '.join(info['notes'])})")
    missed = subsets.outside_ci(results)
    if missed:
        print(
            f"  note: tests in {', '.join(missed)} reached the candidate loop, but the ci subset "
            "leaves those modules out: add them to conformance/subsets.py"
        )
    version = expectations.pyver(results)
    listed = sum(1 for t in results["tests"] if t in entries and entries[t].applies(version))
    print(
        f"conformance check: {'OK' if ok else 'FAILED'} ({len(results['tests'])} tests, "
        f"{listed} listed for Python {version} in {os.path.relpath(path)})"
    )
    if not ok:
        subset = results.get("subset")
        how = f"--subset {subset}" if subset in ("ci", "full") else "--results <file>"
        print(
            f"  to accept a change: python -m conformance refresh {how}, then give new entries "
            "their category and reason (conformance/README.md)"
        )
    return 0 if ok else 1


def cmd_check(args):
    return _check(_load(args.results or results_path("ferroloop", args.subset)), args.expectations)


def cmd_refresh(args):
    results = _load(args.results or results_path("ferroloop", args.subset))
    entries = expectations.load(args.expectations)
    prune = args.prune if args.prune is not None else results["subset"] == "full"
    new = expectations.refresh(results, entries, prune=prune)
    expectations.save(new, args.expectations)
    added = sorted(set(new) - set(entries))
    removed = sorted(set(entries) - set(new))
    for t in added:
        print(f"+ {new[t].line(0)}")
    for t in removed:
        print(f"- {entries[t].line(0)}")
    unclassified = [t for t in new if new[t].category == "unclassified"]
    print(
        f"{os.path.relpath(args.expectations)}: {len(new)} entries, {len(added)} added, {len(removed)} removed"
        + (f"; {len(unclassified)} unclassified: give each a category and reason" if unclassified else "")
    )
    return 0


def cmd_report(args):
    if args.run:
        import importlib.util

        for label in args.labels:
            if importlib.util.find_spec(label) is None:
                print(f"(skipping {label}: not installed; pip install {label})", file=sys.stderr)
                continue
            runner.run(
                f"{label}:new_event_loop",
                subsets.modules(args.subset),
                jobs=args.jobs,
                timeout=60.0,
                module_timeout=1800.0,
                out_path=results_path(label, args.subset),
                log_dir=os.path.join(ARTIFACTS, "logs", f"{label}-{PYVER}-{args.subset}"),
                subset=args.subset,
                echo=lambda s: print(s, flush=True),
            )
        print()
    found = {}
    for label in args.labels:
        path = results_path(label, args.subset)
        if os.path.exists(path):
            found[label] = _load(path)
        else:
            print(
                f"(no results for {label}: python -m conformance run --loop {label} --subset {args.subset})",
                file=sys.stderr,
            )
    if not found:
        return 1
    print(report.table(found, markdown=args.markdown))
    print()
    print(report.describe(found))
    if "ferroloop" in found:
        version = expectations.pyver(found["ferroloop"])
        counts = {}
        for e in expectations.load().values():
            if e.applies(version):
                counts[e.category] = counts.get(e.category, 0) + 1
        print(
            f"ferroloop's expectations for Python {version} ({os.path.relpath(expectations.DEFAULT_PATH)}): "
            + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        )
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    def run_args(p, subset, timeout=60.0, budget=None):
        p.add_argument(
            "--loop",
            default="ferroloop:new_event_loop",
            help="module:factory of the candidate loop (default ferroloop:new_event_loop; "
            "uvloop, asyncio for the side-by-side)",
        )
        p.add_argument("--subset", choices=("ci", "full"), default=subset)
        p.add_argument("--module", action="append", help="run only this module, e.g. test_tasks (repeatable)")
        p.add_argument(
            "--test",
            action="append",
            help="run only this test or class, e.g. test_tasks.CTask_CFuture_Tests (repeatable)",
        )
        p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
        p.add_argument(
            "--timeout", type=float, default=timeout, help=f"seconds a test may take (default {timeout:.0f})"
        )
        p.add_argument(
            "--module-timeout",
            type=float,
            default=1800.0,
            help="seconds a module may take with its restarts (default 1800)",
        )
        p.add_argument(
            "--budget",
            type=float,
            default=budget,
            help="seconds for the whole run; modules still running then are stopped "
            f"and the run is incomplete (default: {budget or 'no limit'})",
        )
        p.add_argument(
            "--out", help="results file (default artifacts/conformance/<label>-<py>-<subset>.json)"
        )
        p.add_argument("--expectations", default=expectations.DEFAULT_PATH)

    p = sub.add_parser("run", help="run test.test_asyncio on a loop")
    run_args(p, "full")
    p.add_argument("--check", action="store_true", help="then check against the expectations file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ci", help="what CI runs: the ci subset on ferroloop, checked, within 15 minutes")
    # 30 s a test: the slowest test takes under 3 s here, and a hang waiting on a feature
    # should not cost CI a minute.
    run_args(p, "ci", timeout=30.0, budget=900.0)
    p.set_defaults(func=cmd_run, check=True)

    for name, func, helptext in (
        ("check", cmd_check, "compare a results file with the expectations"),
        ("refresh", cmd_refresh, "rewrite the expectations from a results file"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--results", help="results file (default: ferroloop's for --subset)")
        p.add_argument("--subset", choices=("ci", "full"), default="full")
        p.add_argument("--expectations", default=expectations.DEFAULT_PATH)
        if name == "refresh":
            p.add_argument(
                "--prune",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="drop entries of tests the run did not see (default: on for full runs)",
            )
        p.set_defaults(func=func)

    p = sub.add_parser("report", help="side by side: ferroloop, uvloop, asyncio")
    p.add_argument("--subset", choices=("ci", "full"), default="full")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--run", action="store_true", help="run each loop first (one after the other)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("labels", nargs="*", default=list(report.LABELS))
    p.set_defaults(func=cmd_report)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
