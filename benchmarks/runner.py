"""Runs the race: every (benchmark, loop, repeat) in a fresh process, loops interleaved.

Micro-benchmarks run `benchmarks._child micro` and read its own measurements (wall time and
CPU time of the process around the workload). Network benchmarks start
`benchmarks._child server` pinned to core 0, load it with the Rust client or wrk pinned to
core 1, and take the server's CPU time from the server itself just before and just after
the load, so CPU per operation is the loop process's alone.
"""

import fnmatch
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from .micro import BENCHMARKS as MICRO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_DIR = os.path.join(ROOT, "benchmarks", "client")
CLIENT_BIN = os.path.join(CLIENT_DIR, "target", "release", "ferroloop-bench-client")

DEFAULT_LOOPS = [
    "ferroloop:new_event_loop",
    "uvloop:new_event_loop",
    "rloop:new_event_loop",
    "rsloop:new_event_loop",
    "asyncio:new_event_loop",
]
BASELINE = "uvloop"

# Network benchmarks: server kind, client, message size, concurrent connections.
NET = {}
for _server, _label in (("tcp_proto", "tcp_proto"), ("tcp_stream", "tcp_stream")):
    for _size, _sl in ((1024, "1k"), (65536, "64k")):
        for _conns in (1, 50):
            NET[f"{_label}_{_sl}_c{_conns}"] = dict(server=_server, client="tcp", size=_size, conns=_conns)
NET["unix_proto_1k_c1"] = dict(server="unix_proto", client="unix", size=1024, conns=1)
NET["unix_proto_1k_c50"] = dict(server="unix_proto", client="unix", size=1024, conns=50)
NET["udp_1k_c1"] = dict(server="udp", client="udp", size=1024, conns=1)
NET["udp_1k_c50"] = dict(server="udp", client="udp", size=1024, conns=50)
NET["http_c50"] = dict(server="http", client="wrk", size=0, conns=50)
NET["aiohttp_c50"] = dict(server="aiohttp", client="wrk", size=0, conns=50)
NET["uvicorn_c50"] = dict(server="uvicorn", client="wrk", size=0, conns=50)
# TLS rows (a self-signed certificate made per run; rloop has no TLS)
NET["tls_proto_1k_c50"] = dict(server="tls_proto", client="tls", size=1024, conns=50, tls=True)
NET["tls_stream_1k_c50"] = dict(server="tls_stream", client="tls", size=1024, conns=50, tls=True)
# one op is a whole 64 MiB transfer: a 3x longer run, so the op count is not a handful
NET["tls_bulk_64m_c1"] = dict(
    server="tls_bulk", client="tls-bulk", size=64 * 1024 * 1024, conns=1, tls=True, duration_factor=3
)
NET["https_aiohttp_c50"] = dict(server="https_aiohttp", client="wrk", size=0, conns=50, tls=True)

ALL_BENCHES = list(MICRO) + list(NET)


def loop_label(spec):
    return spec.partition(":")[0]


def select_benches(patterns):
    if not patterns:
        return list(ALL_BENCHES)
    groups = {"micro": list(MICRO), "net": list(NET)}
    out = []
    for pat in patterns:
        names = groups.get(pat) or [b for b in ALL_BENCHES if fnmatch.fnmatchcase(b, pat)]
        if not names:
            raise SystemExit(f"no benchmark matches {pat!r}; known: {', '.join(ALL_BENCHES)}")
        out += [n for n in names if n not in out]
    return out


# ---------------------------------------------------------------------------- helpers


class Pinning:
    """Server (and micro-benchmark) on core 0, load generator on core 1, when possible."""

    def __init__(self, enabled):
        self.enabled = bool(enabled and shutil.which("taskset") and (os.cpu_count() or 1) >= 2)

    def server(self, cmd):
        return ["taskset", "-c", "0", *cmd] if self.enabled else cmd

    def client(self, cmd):
        return ["taskset", "-c", "1", *cmd] if self.enabled else cmd


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONASYNCIODEBUG", None)  # debug mode would measure something else
    return env


def tail(text, n=600):
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def parse_child_output(stdout):
    """The last JSON line the child printed, or None."""
    for line in reversed((stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def failure(stage, error, **kw):
    return dict(ok=False, stage=stage, error=error, **kw)


CLIENT_TLS_MARK = os.path.join(CLIENT_DIR, "target", "release", "no-tls")


def ensure_client():
    """Build the Rust load client once; returns an error string if it cannot be had.
    With OpenSSL's headers it has the TLS modes (feature "tls"); without them it is built
    without, and the TLS rows are reported as skipped (`client_has_tls`)."""
    src = os.path.join(CLIENT_DIR, "src", "main.rs")
    newest = max(os.path.getmtime(src), os.path.getmtime(os.path.join(CLIENT_DIR, "Cargo.toml")))
    if os.path.exists(CLIENT_BIN) and os.path.getmtime(CLIENT_BIN) >= newest:
        return None
    if not shutil.which("cargo"):
        return "cargo not found: cannot build benchmarks/client"
    print("building the load client (benchmarks/client) ...", file=sys.stderr, flush=True)
    r = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--features", "tls"],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
    )
    if r.returncode == 0:
        if os.path.exists(CLIENT_TLS_MARK):
            os.remove(CLIENT_TLS_MARK)
        return None
    r = subprocess.run(
        ["cargo", "build", "--release", "--quiet"], cwd=CLIENT_DIR, capture_output=True, text=True
    )
    if r.returncode != 0:
        return "building benchmarks/client failed: " + tail(r.stderr)
    with open(CLIENT_TLS_MARK, "w") as f:
        f.write("built without the tls feature (OpenSSL headers missing: apt-get install libssl-dev)\n")
    return None


def client_has_tls():
    return not os.path.exists(CLIENT_TLS_MARK)


# ---------------------------------------------------------------------------- micro


def run_micro(spec, bench, n, pin, timeout):
    cmd = pin.server([sys.executable, "-m", "benchmarks._child", "micro", spec, bench, str(n)])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return failure("timeout", f"no result within {timeout:.0f}s")
    out = parse_child_output(r.stdout)
    if out is None:
        return failure("crash", f"exit code {r.returncode}: {tail(r.stderr)}")
    if not out.get("ok"):
        return failure(out.get("stage", "run"), out.get("error", "?"), detail=tail(out.get("traceback", "")))
    ops = out["ops"]
    return dict(
        ok=True,
        ops=ops,
        wall=out["wall"],
        cpu=out["cpu"],
        ops_per_sec=ops / out["wall"],
        cpu_per_op=out["cpu"] / ops,
        version=out.get("version"),
        loop_type=out.get("loop_type"),
    )


def callgrind_cmd(spec, bench, n, out_file):
    """One micro-benchmark child of n ops under callgrind, its profile written to out_file."""
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        "-m",
        "benchmarks._child",
        "micro",
        spec,
        bench,
        str(n),
    ]


def callgrind_ir(spec, bench, n, timeout):
    """Total instructions (all threads) of one child run under callgrind, and its op count."""
    if not shutil.which("valgrind"):
        return None, None, "valgrind not installed"
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, "cg.out")
        cmd = callgrind_cmd(spec, bench, n, out_file)
        try:
            r = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT
            )
        except subprocess.TimeoutExpired:
            return None, None, f"no result under callgrind within {timeout:.0f}s (hangs under valgrind?)"
        out = parse_child_output(r.stdout)
        if out is None or not out.get("ok"):
            return None, None, (out or {}).get("error") or f"exit code {r.returncode} under callgrind"
        total = None
        with open(out_file) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
        return total, out["ops"], None


def run_callgrind(spec, bench, quick_n, timeout):
    """Instructions per op: the difference of two sizes cancels start-up and import cost."""
    n1, n2 = quick_n, 3 * quick_n
    ir1, ops1, err = callgrind_ir(spec, bench, n1, timeout)
    if err:
        return failure("callgrind", err)
    ir2, ops2, err = callgrind_ir(spec, bench, n2, timeout)
    if err:
        return failure("callgrind", err)
    return dict(
        ok=True,
        ir_per_op=(ir2 - ir1) / (ops2 - ops1),
        ir_small=ir1,
        ir_large=ir2,
        ops_small=ops1,
        ops_large=ops2,
    )


# ---------------------------------------------------------------------------- network


def _read_json_line(proc, timeout):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    line = proc.stdout.readline()
    return json.loads(line) if line.strip().startswith("{") else None


WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    res = {"msgs": int(m.group(1)), "secs": secs}
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        lm = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if lm:
            res[key] = float(lm.group(1)) * WRK_UNITS[lm.group(2)]
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["errors"] = sum(map(int, errs.groups())) if errs else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return res


def make_certificate(tmpdir):
    """A throw-away self-signed certificate for the TLS rows (openssl's CLI)."""
    r = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            os.path.join(tmpdir, "key.pem"),
            "-out",
            os.path.join(tmpdir, "cert.pem"),
        ],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else "openssl req failed: " + tail(r.stderr)


def run_net(spec, bench, duration, pin, client_error):
    cfg = NET[bench]
    duration = duration * cfg.get("duration_factor", 1)
    if cfg["client"] == "wrk" and not shutil.which("wrk"):
        return failure("skipped", "wrk not installed (apt-get install wrk)")
    if cfg["client"] != "wrk" and client_error:
        return failure("skipped", client_error)
    if cfg["client"].startswith("tls") and not client_has_tls():
        return failure("skipped", "load client built without TLS (apt-get install libssl-dev)")
    tmpdir = tempfile.mkdtemp(prefix="ferroloop-bench-")
    addr = os.path.join(tmpdir, "echo.sock") if cfg["server"].startswith("unix") else "127.0.0.1:0"
    env = child_env()
    if cfg.get("tls"):
        if spec.startswith("rloop"):
            shutil.rmtree(tmpdir, ignore_errors=True)
            return failure("unsupported", "rloop has no TLS")
        cert_error = make_certificate(tmpdir)
        if cert_error:
            shutil.rmtree(tmpdir, ignore_errors=True)
            return failure("skipped", cert_error)
        env["FERROLOOP_BENCH_CERT"] = tmpdir
    cmd = pin.server([sys.executable, "-m", "benchmarks._child", "server", spec, cfg["server"], addr])
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        try:
            ready = _read_json_line(proc, 30)
        except ValueError:
            ready = None
        if ready is None:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            return failure("crash", f"server gave no address (exit code {proc.returncode}): {tail(err)}")
        if not ready.get("ok"):
            return failure(
                ready.get("stage", "start"), ready.get("error", "?"), detail=tail(ready.get("traceback", ""))
            )
        bound = ready["addr"]
        proc.stdin.write("cpu\n")
        proc.stdin.flush()
        before = _read_json_line(proc, 10)
        if cfg["client"] == "wrk":
            ccmd = [
                "wrk",
                "-t1",
                f"-c{cfg['conns']}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "--timeout",
                "5s",
                f"{'https' if cfg.get('tls') else 'http'}://{bound}/",
            ]
        else:
            ccmd = [
                CLIENT_BIN,
                cfg["client"],
                "--addr",
                bound,
                "--size",
                str(cfg["size"]),
                "--conns",
                str(cfg["conns"]),
                "--duration",
                str(duration),
            ]
        children0 = os.times()
        try:
            cr = subprocess.run(pin.client(ccmd), capture_output=True, text=True, timeout=duration + 60)
        except subprocess.TimeoutExpired:
            return failure("timeout", "load client did not finish")
        children1 = os.times()
        # the load client's own CPU (user + system), to show it is not the bottleneck
        client_cpu = (
            children1.children_user
            - children0.children_user
            + children1.children_system
            - children0.children_system
        )
        if proc.poll() is not None:
            _, err = proc.communicate(timeout=10)
            return failure("crash", f"server died under load (exit code {proc.returncode}): {tail(err)}")
        proc.stdin.write("cpu\n")
        proc.stdin.flush()
        after = _read_json_line(proc, 10)
        if before is None or after is None:
            return failure("crash", "server stopped answering its control channel")
        if cfg["client"] == "wrk":
            res = parse_wrk(cr.stdout)
            if res is None:
                return failure("client", f"wrk failed: {tail(cr.stdout + cr.stderr)}")
        else:
            res = parse_child_output(cr.stdout)
            if res is None or "error" in res:
                return failure("client", (res or {}).get("error") or tail(cr.stdout + cr.stderr))
        if not res["msgs"]:
            return failure("run", f"no round trip completed ({res.get('errors', 0)} errors)")
        cpu = after["cpu"] - before["cpu"]
        out = dict(
            ok=True,
            ops=res["msgs"],
            wall=res["secs"],
            cpu=cpu,
            ops_per_sec=res["msgs"] / res["secs"],
            cpu_per_op=cpu / res["msgs"],
            p50_us=res.get("p50_us"),
            p99_us=res.get("p99_us"),
            errors=res.get("errors", 0) + res.get("non2xx", 0) + res.get("lost", 0),
            version=ready.get("version"),
            loop_type=ready.get("loop_type"),
            client_cpu_share=res.get("cpu_secs", client_cpu) / res["secs"] if res["secs"] else None,
        )
        if cfg["client"] == "tls-bulk":
            out["mb_per_sec"] = res["msgs"] * cfg["size"] / res["secs"] / 1e6
        return out
    finally:
        if proc.poll() is None:
            try:
                proc.stdin.close()  # the server exits on EOF
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------- the race


def machine_info(ferroloop_commit=None):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "libc": " ".join(platform.libc_ver()),
        "python": sys.version.split()[0],
        # The machine is shared: a load average above the core count means others were busy.
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "ferroloop_commit": ferroloop_commit or commit + ("-dirty" if dirty else ""),
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines() or [""])[0][
            :40
        ]
        if shutil.which("wrk")
        else None,
    }


def race(
    loops,
    benches,
    repeat,
    quick,
    duration,
    pin_enabled,
    callgrind,
    log=print,
    checkpoint=None,
    callgrind_loops=None,
    ferroloop_commit=None,
):
    pin = Pinning(pin_enabled)
    load_start = [round(x, 2) for x in os.getloadavg()]
    client_error = ensure_client() if any(b in NET and NET[b]["client"] != "wrk" for b in benches) else None
    if client_error:
        log(f"note: {client_error}")
    runs = []
    labels = [loop_label(s) for s in loops]
    for bench in benches:
        for rep in range(repeat):
            # Rotate the order each repeat, so no loop always runs right after another.
            k = rep % len(loops)
            for spec in loops[k:] + loops[:k]:
                t0 = time.perf_counter()
                if bench in MICRO:
                    _, full_n, quick_n, _ = MICRO[bench]
                    n = quick_n if quick else full_n
                    res = run_micro(spec, bench, n, pin, timeout=60 if quick else 600)
                else:
                    res = run_net(spec, bench, duration, pin, client_error)
                res.update(bench=bench, loop=loop_label(spec), spec=spec, rep=rep)
                runs.append(res)
                if res["ok"]:
                    log(
                        f"{bench:18} {res['loop']:10} #{rep}  {res['ops_per_sec']:>13,.0f} ops/s  "
                        f"{res['cpu_per_op'] * 1e6:9.3f} us CPU/op  ({time.perf_counter() - t0:.1f}s)"
                    )
                else:
                    log(f"{bench:18} {res['loop']:10} #{rep}  FAILED [{res['stage']}] {res['error'][:120]}")
    callgrind_runs = []
    results = {
        "meta": dict(
            machine_info(ferroloop_commit),
            loadavg_start=load_start,
            loops=loops,
            labels=labels,
            benches=benches,
            repeat=repeat,
            quick=quick,
            duration=duration,
            pinned=pin.enabled,
            baseline=BASELINE if BASELINE in labels else labels[0],
            sizes={b: (MICRO[b][2] if quick else MICRO[b][1]) for b in benches if b in MICRO},
            units={b: MICRO[b][3] for b in benches if b in MICRO},
            net={b: NET[b] for b in benches if b in NET},
        ),
        "runs": runs,
        "callgrind": callgrind_runs,
    }
    if callgrind and checkpoint:
        checkpoint(results)  # the timings are safe even if a callgrind run goes wrong
    if callgrind:
        for bench in [b for b in benches if b in MICRO]:
            for spec in loops:
                if callgrind_loops and loop_label(spec) not in callgrind_loops:
                    continue
                # A loop that hangs under valgrind (rsloop does) costs this much per size.
                res = run_callgrind(spec, bench, MICRO[bench][2], timeout=300)
                res.update(bench=bench, loop=loop_label(spec), spec=spec)
                callgrind_runs.append(res)
                if res["ok"]:
                    log(f"{bench:18} {res['loop']:10} callgrind {res['ir_per_op']:12,.0f} instructions/op")
                else:
                    log(f"{bench:18} {res['loop']:10} callgrind FAILED {res['error'][:120]}")
    return results


# ---------------------------------------------------------------------------- summary


def summarize(results):
    """Per (bench, loop): medians and ranges of the successful runs, and failures."""
    meta = results["meta"]
    summary = {}
    for bench in meta["benches"]:
        for label in meta["labels"]:
            rs = [r for r in results["runs"] if r["bench"] == bench and r["loop"] == label]
            ok = [r for r in rs if r["ok"]]
            bad = [r for r in rs if not r["ok"]]
            s = {
                "n_ok": len(ok),
                "n": len(rs),
                "failures": sorted({f"[{r['stage']}] {r['error']}" for r in bad}),
            }
            if ok:
                for key in ("ops_per_sec", "cpu_per_op", "p50_us", "p99_us"):
                    vals = [r[key] for r in ok if r.get(key) is not None]
                    if vals:
                        s[key] = statistics.median(vals)
                        s[key + "_min"] = min(vals)
                        s[key + "_max"] = max(vals)
                s["version"] = ok[0].get("version")
            cg = [c for c in results.get("callgrind", []) if c["bench"] == bench and c["loop"] == label]
            if cg:
                s["ir_per_op"] = cg[0].get("ir_per_op") if cg[0]["ok"] else None
                if not cg[0]["ok"]:
                    s["ir_error"] = cg[0]["error"]
            summary[(bench, label)] = s
    base = meta.get("baseline", BASELINE)
    for (bench, _label), s in summary.items():
        b = summary.get((bench, base), {})
        if "ops_per_sec" in s and "ops_per_sec" in b:
            s["speed_vs_base"] = s["ops_per_sec"] / b["ops_per_sec"]
            s["cpu_vs_base"] = s["cpu_per_op"] / b["cpu_per_op"]
        if s.get("ir_per_op") and b.get("ir_per_op"):
            s["ir_vs_base"] = s["ir_per_op"] / b["ir_per_op"]
    return summary


def verdict(summary, meta, bench, ours="ferroloop"):
    """The issue's bar: lowest CPU/op of all, and median throughput at least the baseline's."""
    s = summary.get((bench, ours))
    if not s or "ops_per_sec" not in s:
        return "fails: " + "; ".join(s["failures"]) if s and s["failures"] else "not run"
    problems = []
    for label in meta["labels"]:
        if label == ours:
            continue
        p = summary.get((bench, label), {})
        if "cpu_per_op" in p and p["cpu_per_op"] <= s["cpu_per_op"]:
            # Medians decide; say so when the repeats' ranges overlap (a gap within noise).
            overlap = p.get("cpu_per_op_max", 0) >= s.get("cpu_per_op_min", float("inf"))
            problems.append(f"CPU/op above {label}" + (" (ranges overlap)" if overlap else ""))
    base = meta.get("baseline", BASELINE)
    b = summary.get((bench, base), {})
    if "ops_per_sec" in b and s["ops_per_sec"] < b["ops_per_sec"]:
        overlap = s.get("ops_per_sec_max", 0) >= b.get("ops_per_sec_min", float("inf"))
        problems.append(f"throughput below {base}" + (" (ranges overlap)" if overlap else ""))
    return "ahead" if not problems else "short: " + ", ".join(problems)
