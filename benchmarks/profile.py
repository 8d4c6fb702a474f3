"""Instructions per operation by function, for one micro-benchmark on one loop.

    python -m benchmarks profile call_soon [--loop ferroloop:new_event_loop] [--sizes 100000 300000]

Runs the benchmark under callgrind at two sizes and prints, per function, the difference of
the two runs divided by the extra operations: start-up and imports cancel out, what is left
is what one more operation costs. Self cost by default, `--inclusive` for inclusive cost
(recursive frames make inclusive figures add up to more than the total).
"""

import os
import re
import shutil
import subprocess
import tempfile

from .micro import BENCHMARKS
from .runner import ROOT, callgrind_cmd, child_env

LINE = re.compile(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*?)(?: \[[^\]]*\])?$")


def _annotate(out_file, inclusive):
    cmd = ["callgrind_annotate", "--auto=no", "--threshold=100"]
    if inclusive:
        cmd.append("--inclusive=yes")
    text = subprocess.run(cmd + [out_file], capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).split(":", 1)[-1]  # drop the source file
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def _run(spec, bench, n, tmp):
    out_file = os.path.join(tmp, f"cg.{n}.out")
    r = subprocess.run(
        callgrind_cmd(spec, bench, n, out_file),
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=1200,
    )
    if r.returncode != 0:
        raise SystemExit(f"callgrind run failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    return out_file


def main(args):
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if args.bench not in BENCHMARKS:
        raise SystemExit(f"not a micro-benchmark: {args.bench}")
    n1, n2 = args.sizes or (BENCHMARKS[args.bench][2], 3 * BENCHMARKS[args.bench][2])
    with tempfile.TemporaryDirectory() as tmp:
        f1, f2 = _run(args.loop, args.bench, n1, tmp), _run(args.loop, args.bench, n2, tmp)
        a, b = _annotate(f1, args.inclusive), _annotate(f2, args.inclusive)
    per = {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}
    total = sum(per.values()) if not args.inclusive else None
    kind = "inclusive" if args.inclusive else "self"
    print(
        f"{args.loop} {args.bench}: {kind} instructions per op, sizes {n1} -> {n2}"
        + (f" (total {total:,.0f})" if total else "")
    )
    for name, v in sorted(per.items(), key=lambda kv: -kv[1])[: args.top]:
        if v >= 1:
            print(f"{v:10,.1f}  {name[:160]}")
    return 0
