"""Run test.test_asyncio module by module, each in its own process with time limits."""

import concurrent.futures
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

from . import candidate

MAX_RESTARTS = 20  # per module: a module whose tests keep hanging is given up after this

# The longest modules start first, so that with several jobs none is left running alone.
LONG_FIRST = ("test_tasks", "test_ssl", "test_subprocess", "test_events", "test_taskgroups")


def all_modules():
    """Every test module of the running interpreter's test.test_asyncio, sorted."""
    try:
        import test.test_asyncio as package
    except ImportError as exc:
        raise SystemExit(
            f"conformance: this interpreter ships no test.test_asyncio ({exc}); "
            "install its test package (e.g. Debian's libpythonX.Y-testsuite)"
        ) from exc

    names = os.listdir(os.path.dirname(package.__file__))
    return sorted(n[:-3] for n in names if n.startswith("test_") and n.endswith(".py"))


def _read_events(path):
    events = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
    except FileNotFoundError:
        pass
    return events


def run_module(module, loop_spec, *, timeout, module_timeout, workdir, log_path, only=None, deadline=None):
    """Run one module; restart it past each test that hangs or crashes the process.

    `deadline` (time.monotonic()) is the whole run's budget. Returns (tests: {id: record},
    info: {"status": "ok" | "incomplete" | "error" | "not run", ...}).
    """
    tests = {}
    info = {"restarts": 0, "status": "ok", "notes": []}
    t0 = time.monotonic()
    end = t0 + module_timeout if deadline is None else min(t0 + module_timeout, deadline)
    if end <= t0:
        info.update(status="not run", duration=0.0)
        info["notes"].append("the run's time budget was spent before this module started")
        return tests, info
    os.makedirs(workdir, exist_ok=True)
    exclude_path = os.path.join(workdir, "exclude.txt")
    only_path = None
    if only is not None:
        only_path = os.path.join(workdir, "only.txt")
        with open(only_path, "w") as f:
            f.write("".join(f"{t}\n" for t in sorted(only)))
    with open(log_path, "w") as log:
        while True:
            events_path = os.path.join(workdir, f"events-{info['restarts']}.jsonl")
            hang_path = os.path.join(workdir, f"hang-{info['restarts']}.txt")
            with open(exclude_path, "w") as f:
                f.write("".join(f"{t}\n" for t in sorted(tests)))
            cmd = [
                sys.executable,
                "-m",
                "conformance.worker",
                "--module",
                module,
                "--loop",
                loop_spec,
                "--events",
                events_path,
                "--hang",
                hang_path,
                "--timeout",
                str(timeout),
                "--exclude",
                exclude_path,
            ]
            if only_path:
                cmd += ["--only", only_path]
            log.write(f"\n=== {' '.join(cmd)}\n")
            log.flush()
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [_repo_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            )
            # Its own session, so a hang's leftover children go down with it; its own empty
            # cwd, as regrtest gives each test, for files the tests leave behind.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
            killed = False
            try:
                proc.wait(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed = True
                _kill_group(proc)
            events = _read_events(events_path)
            started = None
            main_thread = None
            seen = {"created": 0, "ran": False}
            done = False
            for ev in events:
                if ev["ev"] == "start":
                    started = ev["id"]
                    seen = {"created": 0, "ran": False}
                elif ev["ev"] in ("created", "ran"):
                    seen["created"] = seen["created"] or 1
                    seen["ran"] = seen["ran"] or ev["ev"] == "ran"
                elif ev["ev"] == "end":
                    rec = {k: v for k, v in ev.items() if k not in ("ev", "id")}
                    tests[ev["id"]] = rec
                    if started == ev["id"]:
                        started = None
                elif ev["ev"] == "begin":
                    info["loop_type"] = ev["loop_type"]
                    main_thread = ev.get("main_thread")
                elif ev["ev"] == "done":
                    done = True
            hang_text = _read_text(hang_path)
            if hang_text:
                log.write(f"\n=== stacks at the time limit ({timeout:.0f}s a test)\n{hang_text}")
                log.flush()
            if done and proc.returncode == 0:
                break
            if killed:
                why = "module time limit or the run's budget reached"
            elif hang_text:
                why = f"test time limit ({timeout:.0f}s) reached"
            else:
                why = f"worker exited with {_describe_rc(proc.returncode)}"
            if started is not None:
                outcome = "hung" if (killed or hang_text) else "crashed"
                tests[started] = {
                    "outcome": outcome,
                    "duration": None,
                    **seen,
                    "detail": why + _hang_summary(hang_text, main_thread),
                    "unimplemented": None,
                }
                info["notes"].append(f"{started}: {outcome} ({why})")
            else:
                info["notes"].append(f"outside any test: {why}")
                if not events:
                    info["status"] = "error"
            if killed or started is None or info["restarts"] >= MAX_RESTARTS:
                if info["status"] == "ok":
                    info["status"] = "incomplete"
                break
            info["restarts"] += 1
    info["duration"] = round(time.monotonic() - t0, 1)
    return tests, info


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _hang_summary(text, main_thread):
    """The innermost frames of the main thread (where the test waits) from a faulthandler dump."""
    if not text:
        return ""
    blocks = text.split("\n\n")
    tag = f"0x{main_thread:016x}" if main_thread else None
    main = next((b for b in blocks if tag and tag in b), None) or next(
        (b for b in blocks if "Current thread" in b), blocks[0]
    )
    frames = [line.strip() for line in main.splitlines() if line.strip().startswith("File ")]
    return "; main thread in:\n" + "\n".join(frames[:6])


def _describe_rc(rc):
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"status {rc}"


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run(
    loop_spec,
    modules,
    *,
    jobs,
    timeout,
    module_timeout,
    out_path,
    log_dir,
    subset,
    only=None,
    budget=None,
    echo=print,
):
    """Run `modules` on the loop; write the JSON results to out_path; return them.

    `only`: {module: test id prefixes} to run only those tests. `budget`: seconds for the
    whole run, after which running modules are stopped and the rest not started."""
    label = candidate.resolve(loop_spec)[0]
    os.makedirs(log_dir, exist_ok=True)
    results = {
        "loop": loop_spec,
        "label": label,
        "python": platform.python_version(),
        "subset": subset,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeout": timeout,
        "modules": {},
        "tests": {},
    }
    t0 = time.monotonic()
    deadline = None if budget is None else t0 + budget
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:

        def one(module):
            return module, run_module(
                module,
                loop_spec,
                timeout=timeout,
                module_timeout=module_timeout,
                workdir=os.path.join(tmp, module),
                log_path=os.path.join(log_dir, f"{module}.log"),
                only=None if only is None else only.get(module, set()),
                deadline=deadline,
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            ordered = sorted(
                modules, key=lambda m: LONG_FIRST.index(m) if m in LONG_FIRST else len(LONG_FIRST)
            )
            for fut in concurrent.futures.as_completed([pool.submit(one, m) for m in ordered]):
                module, (tests, info) = fut.result()
                results["modules"][module] = info
                results["tests"].update(tests)
                echo(_module_line(label, module, tests, info))
    results["duration"] = round(time.monotonic() - t0, 1)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    return results


def _module_line(label, module, tests, info):
    n = len(tests)
    on = sum(1 for r in tests.values() if r.get("ran"))
    bad = sum(1 for r in tests.values() if r["outcome"] in ("failed", "crashed") and r.get("created"))
    hung = sum(1 for r in tests.values() if r["outcome"] == "hung")
    extra = f" [{info['status']}: {'; '.join(info['notes'])}]" if info["notes"] else ""
    return (
        f"{label:>10} {module:<24} {n:4d} run {on:4d} on candidate {bad:3d} failed "
        f"{hung:2d} hung  {info['duration']:6.1f}s{extra}"
    )
