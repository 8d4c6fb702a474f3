"""The tutorial's example programs, each run on ferroloop beside stock asyncio, with their
timings: the same printed lines, the same concurrency, on both loops.

    python demo/tutorial_examples.py [NAME ...]
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "seed-examples")
SEED = SHARED if os.path.isdir(SHARED) else os.path.join(HERE, "..", "tests", "seed_examples")
LOOPS = [("ferroloop", "ferroloop:new_event_loop"), ("asyncio", "asyncio:new_event_loop")]


def run_one(name, spec):
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, os.path.join(SEED, name + ".py"), spec],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SEED,
    )
    dt = time.perf_counter() - t0
    return p.returncode == 0, dt, p.stdout


def main(argv):
    names = sorted(
        f[:-3]
        for f in os.listdir(SEED)
        if f.endswith(".py") and not f.startswith("_") and f not in ("run_all.py", "loopspec.py")
    )
    if argv:
        names = [n for n in names if n in argv]
    print(
        f"The tutorial's programs on ferroloop and on stock asyncio ({len(names)} programs, from {os.path.relpath(SEED)})\n"
    )
    print(f"{'program':<24} {'ferroloop':>12} {'asyncio':>12}   result")
    failures = 0
    for name in names:
        cells, verdicts = [], []
        for label, spec in LOOPS:
            ok, dt, out = run_one(name, spec)
            cells.append(f"{dt:10.2f} s")
            verdicts.append("ok" if ok else "FAIL")
            failures += (not ok) and label == "ferroloop"
        print(f"{name:<24} {cells[0]:>12} {cells[1]:>12}   ferroloop {verdicts[0]}, asyncio {verdicts[1]}")
    print()
    ok, _, out = run_one("ex3_create_task", LOOPS[0][1])
    print("Example 3 on ferroloop (two tasks sleeping at once, about 2 s not 3 s):")
    print("  " + "\n  ".join(out.strip().splitlines()))
    print(f"\n{len(names) - failures} of {len(names)} programs pass on ferroloop")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
