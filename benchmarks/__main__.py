"""python -m benchmarks run|report|profile|deps|list — see benchmarks/README.md."""

import argparse
import json
import os
import sys
import time

from . import report, runner

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# Failures that mean the loop broke while running, not that a feature is missing.
HARD_STAGES = {"crash", "timeout", "run", "serve", "client", "start"}


def write_outputs(results, args):
    if args.chart:
        os.makedirs(os.path.dirname(os.path.abspath(args.chart)), exist_ok=True)
        err = report.chart(results, args.chart)
        print(f"chart: {err}" if err else f"chart written to {args.chart}")
    if args.markdown:
        chart_ref = None
        if args.chart:
            chart_ref = os.path.relpath(
                os.path.abspath(args.chart), os.path.dirname(os.path.abspath(args.markdown))
            )
        body = report.markdown(results, chart_ref, intro="## Results of the last full run")
        block = f"{BEGIN}\n{body}\n{END}"
        old = open(args.markdown).read() if os.path.exists(args.markdown) else ""
        if BEGIN in old and END in old:
            # Keep the hand-written text around the generated block.
            new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
        else:
            new = "# Benchmarks\n\n" + block + "\n"
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(new)
        print(f"markdown written to {args.markdown}")


def cmd_run(args):
    loops = [s.strip() for s in args.loops.split(",") if s.strip()]
    benches = runner.select_benches(args.bench)
    repeat = 1 if args.quick and args.repeat is None else (args.repeat or 5)
    duration = args.duration or (0.3 if args.quick else 2.0)
    t0 = time.time()
    out = args.json or os.path.join(
        runner.ROOT, "benchmarks", "results", time.strftime("run-%Y%m%d-%H%M%S.json")
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    def save(results):
        results["meta"]["command"] = "python -m benchmarks " + " ".join(sys.argv[1:])
        results["meta"]["elapsed_s"] = round(time.time() - t0, 1)
        with open(out, "w") as f:
            json.dump(results, f, indent=1)

    cg_loops = {x.strip() for x in args.callgrind_loops.split(",")} if args.callgrind_loops else None
    results = runner.race(
        loops,
        benches,
        repeat,
        args.quick,
        duration,
        not args.no_pin,
        args.callgrind,
        checkpoint=save,
        callgrind_loops=cg_loops,
        ferroloop_commit=args.ferroloop_commit,
    )
    save(results)
    print()
    print(report.console(results))
    print(f"\nraw results: {out}  ({results['meta']['elapsed_s']} s)")
    write_outputs(results, args)
    if args.strict:
        strict = {s.strip() for s in args.strict.split(",")}
        hard = [
            r for r in results["runs"] if not r["ok"] and r["loop"] in strict and r["stage"] in HARD_STAGES
        ]
        if hard:
            for r in hard:
                print(f"STRICT: {r['loop']} {r['bench']} [{r['stage']}] {r['error']}", file=sys.stderr)
            return 1
    return 0


def cmd_report(args):
    with open(args.results) as f:
        results = json.load(f)
    print(report.console(results))
    write_outputs(results, args)
    return 0


def cmd_deps(args):
    import tomllib

    with open(os.path.join(runner.ROOT, "pyproject.toml"), "rb") as f:
        print(" ".join(tomllib.load(f)["project"]["optional-dependencies"]["bench"]))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the race")
    r.add_argument(
        "--loops",
        default=",".join(runner.DEFAULT_LOOPS),
        help="comma-separated module:factory specs (default: %(default)s)",
    )
    r.add_argument(
        "--bench",
        nargs="*",
        metavar="NAME",
        help="benchmark names or fnmatch patterns, or 'micro'/'net' (default: all)",
    )
    r.add_argument(
        "--repeat", type=int, default=None, help="repeats per (benchmark, loop); default 5, 1 with --quick"
    )
    r.add_argument(
        "--quick", action="store_true", help="small sizes, short network runs, one repeat (CI smoke)"
    )
    r.add_argument(
        "--duration", type=float, default=None, help="seconds per network run (default 2, 0.3 with --quick)"
    )
    r.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate cores")
    r.add_argument(
        "--callgrind", action="store_true", help="also count instructions per op of the micro-benchmarks"
    )
    r.add_argument(
        "--callgrind-loops",
        metavar="LABELS",
        help="count instructions only for these loops (e.g. leave out one that hangs under valgrind)",
    )
    r.add_argument(
        "--ferroloop-commit",
        metavar="TEXT",
        help="what to record as ferroloop's commit when it was not built from this checkout",
    )
    r.add_argument("--json", help="where to write the raw results (default benchmarks/results/run-*.json)")
    r.add_argument("--chart", help="write a PNG chart here (needs matplotlib)")
    r.add_argument("--markdown", help="write the tables into this Markdown file (between result markers)")
    r.add_argument(
        "--strict",
        metavar="LOOPS",
        help="exit 1 if these loops crashed, hung or raised while running (missing features do not count)",
    )
    r.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="redraw tables/chart from a results JSON")
    rp.add_argument("results")
    rp.add_argument("--chart")
    rp.add_argument("--markdown")
    rp.set_defaults(func=cmd_report)
    pf = sub.add_parser("profile", help="callgrind: instructions per op by function, one micro-benchmark")
    pf.add_argument("bench")
    pf.add_argument("--loop", default="ferroloop:new_event_loop")
    pf.add_argument("--sizes", nargs=2, type=int, metavar=("N1", "N2"))
    pf.add_argument("--inclusive", action="store_true")
    pf.add_argument("--top", type=int, default=30)
    pf.set_defaults(func=lambda a: __import__("benchmarks.profile", fromlist=["main"]).main(a))
    dp = sub.add_parser("deps", help="print the 'bench' extra's requirements (for pip install)")
    dp.set_defaults(func=cmd_deps)
    ls = sub.add_parser("list", help="list the benchmarks")
    ls.set_defaults(func=lambda a: print("\n".join(runner.ALL_BENCHES)) or 0)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
