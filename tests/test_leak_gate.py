"""The leak gates of tests/conftest.py fail a module that leaves descriptors, child
processes or threads behind, and name them; a clean module passes."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

LEAKY = """
import os, subprocess, threading
KEEP = []

def test_leaks():
    KEEP.append(os.open(os.devnull, os.O_RDONLY))
    KEEP.append(subprocess.Popen(["sleep", "5"]))
    stop = threading.Event()
    KEEP.append(stop)
    threading.Thread(target=stop.wait, name="left-running", daemon=True).start()
"""

CLEAN = """
import os, subprocess, threading

def test_clean():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    subprocess.run(["true"], check=True)
    t = threading.Thread(target=lambda: None)
    t.start()
"""


def run_module(tmp_path, source):
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_mod.py").write_text(source)
    env = dict(os.environ)
    env.pop("FERROLOOP_NO_LEAK_GATE", None)
    env["FERROLOOP_LEAK_GRACE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_mod.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_gate_names_what_leaked(tmp_path):
    out = run_module(tmp_path, LEAKY)
    assert out.returncode != 0, out.stdout
    text = out.stdout
    assert "test_mod leaked" in text
    assert "descriptors: " in text and "/dev/null" in text
    assert "child processes: " in text and "sleep 5" in text
    assert "threads: 'left-running'" in text


def test_gate_passes_a_clean_module(tmp_path):
    out = run_module(tmp_path, CLEAN)
    assert out.returncode == 0, out.stdout + out.stderr
