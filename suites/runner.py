"""Fetching a library's tests, its venv, its servers, and one pytest run on one loop.

Downloads are cached per machine: sdists and their unpacked trees under
$FERROLOOP_SUITES_CACHE (default ~/.cache/ferroloop/suites), wheels in pip's own cache; a
suite's venv (.venv/suites/NAME) is rebuilt only when its requirement list changes. A
fresh machine fetches everything from PyPI by itself.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
CACHE = Path(os.environ.get("FERROLOOP_SUITES_CACHE", Path.home() / ".cache" / "ferroloop" / "suites"))
VENVS = ROOT / ".venv" / "suites"


def log(msg):
    print(f"[suites] {msg}", flush=True)


def sources(lib):
    """The unpacked sdist of lib's pinned version (downloaded once per machine)."""
    tree = CACHE / "src" / f"{lib.name}-{lib.version}"
    if (tree / ".complete").exists():
        return tree
    sdists = CACHE / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    found = _find_sdist(sdists, lib)
    if found is None:
        log(f"{lib.pin}: downloading its sdist from PyPI")
        # --no-build-isolation off: pip prepares the sdist's metadata in an isolated build env.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                lib.pin,
                "-d",
                str(sdists),
            ],
            check=True,
        )
        found = _find_sdist(sdists, lib)
        if found is None:
            raise RuntimeError(f"no sdist of {lib.pin} after pip download")
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix="unpack-"))
    with tarfile.open(found) as tar:
        tar.extractall(tmp, filter="data")
    (top,) = [p for p in tmp.iterdir() if p.is_dir()]
    if tree.exists():
        shutil.rmtree(tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    top.rename(tree)
    shutil.rmtree(tmp, ignore_errors=True)
    (tree / ".complete").touch()
    return tree


def _find_sdist(directory, lib):
    norm = lib.name.replace("-", "_").lower()
    for p in directory.glob("*.tar.gz"):
        stem = p.name[: -len(".tar.gz")]
        name, _, version = stem.rpartition("-")
        if name.replace("-", "_").lower() == norm and version == lib.version:
            return p
    return None


def venv(lib, python, loops):
    """.venv/suites/NAME with lib's wheel, its test requirements and ferroloop (the dev
    build, through a .pth file, so a rebuild needs no reinstall)."""
    path = VENVS / lib.name
    reqs = [lib.pin, *lib.requirements]
    stamp = hashlib.sha256(json.dumps([python, reqs]).encode()).hexdigest()
    marker = path / ".ferroloop-suite"
    py = path / "bin" / "python"
    if not (marker.exists() and marker.read_text() == stamp and py.exists()):
        log(f"{lib.name}: creating {path.relative_to(ROOT)} ({len(reqs)} requirements)")
        started = time.monotonic()
        if path.exists():
            shutil.rmtree(path)
        subprocess.run([python, "-m", "venv", str(path)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], check=True)
        marker.write_text(stamp)
        log(f"{lib.name}: venv ready in {time.monotonic() - started:.0f} s")
    if "uvloop" in loops:  # the optional third column; not part of the venv's stamp
        subprocess.run([str(py), "-m", "pip", "install", "-q", "uvloop"], check=True)
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "ferroloop-dev.pth").write_text(str(ROOT / "python") + "\n")
    return py


class Servers:
    """PostgreSQL and Redis on loopback in temp dirs, as tests/compat starts them."""

    def __init__(self, names):
        self.names = names
        self.running = []
        self.env = {}

    def __enter__(self):
        sys.path.insert(0, str(ROOT / "tests" / "compat"))
        import compatlib  # the compat suite's Postgres / Redis (initdb + pg_ctl, redis-server)

        try:
            if "postgres" in self.names:
                pg = compatlib.Postgres().start()
                self.running.append(pg)
                self.env.update(PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user, PGDATABASE=pg.database)
            if "redis" in self.names:
                r = compatlib.Redis().start()
                self.running.append(r)
                self.env["FERROLOOP_SUITE_REDIS_URL"] = f"redis://{r.host}:{r.port}/0"
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for server in reversed(self.running):
            server.stop()
        self.running.clear()


def run(lib, loop, py, tree, paths, out_dir, server_env, budget):
    """One pytest run of lib's suite on `loop`; returns (junit path, stats, wall seconds, note)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = out_dir / f"{lib.name}-{loop}.xml"
    stats_path = out_dir / f"{lib.name}-{loop}.stats.json"
    log_path = out_dir / f"{lib.name}-{loop}.log"
    for p in (junit, stats_path):
        p.unlink(missing_ok=True)
    argv = [
        str(py.parent / "pytest"),
        *paths,
        "-p",
        "ferroloop_suite_plugin",
        f"--junit-xml={junit}",
        "-o",
        "junit_family=xunit1",
        f"--timeout={lib.timeout}",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    if lib.addopts is not None:
        argv += ["-o", f"addopts={lib.addopts}"]
    argv += list(lib.pytest_args)
    if "FERROLOOP_SUITE_REDIS_URL" in server_env:
        argv.append(f"--redis-url={server_env['FERROLOOP_SUITE_REDIS_URL']}")
    env = {
        **os.environ,
        **lib.env,
        **server_env,
        "FERROLOOP_SUITE_LOOP": loop,
        "FERROLOOP_SUITE_STATS": str(stats_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    log(f"{lib.name} on {loop}: pytest {' '.join(paths)} (budget {budget} s)")
    start = time.monotonic()
    note = ""
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(
            argv, cwd=tree, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(budget)
        except subprocess.TimeoutExpired:
            note = f"stopped after its budget of {budget} s"
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
    wall = time.monotonic() - start
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    if not junit.exists():
        note = note or f"pytest exited {proc.returncode} without a report (see {log_path})"
    return junit, stats, wall, note
