"""`python -m ferroloop run|doctor|trace`: unchanged scripts land on ferroloop, and end as
they end under `python script.py` (each case is compared with a real python run)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        print(type(loop).__module__, type(loop).__name__, sys.argv[1:], loop.get_debug())
    if __name__ == "__main__":
        asyncio.run(main())
""")


def run_cli(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ferroloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def test_run_script_lands_on_ferroloop(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    p = run_cli("run", str(script), "a", "--flag")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ferroloop._loop Loop ['a', '--flag'] False"


def test_run_debug(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    p = run_cli("run", "--debug", str(script))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("True")


def test_run_module(tmp_path):
    (tmp_path / "mymod.py").write_text(SCRIPT)
    p = subprocess.run(
        [sys.executable, "-m", "ferroloop", "run", "-m", "mymod", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ferroloop._loop Loop ['x'] False"


def test_missing_script():
    p = run_cli("run")
    assert p.returncode != 0
    assert "give a script" in p.stderr


def test_version():
    p = run_cli("version")
    assert p.returncode == 0 and p.stdout.startswith("ferroloop ")


def test_version_flag():
    import ferroloop

    p = run_cli("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"ferroloop {ferroloop.__version__} on Python {sys.version.split()[0]}"


def test_console_script_version():
    launcher = os.path.join(os.path.dirname(sys.executable), "ferroloop")
    if not os.path.exists(launcher):
        pytest.skip("no ferroloop launcher beside this python")
    p = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("ferroloop "), p.stderr


# -- ending as `python script.py` ends ------------------------------------------------------

PROGRAMS = {
    "syntax_error": "x = 1\ndef (:\n",
    "exit_3": "import asyncio\nasync def main():\n    raise SystemExit(3)\nasyncio.run(main())\n",
    "exit_msg": "import sys\nsys.exit('goodbye: bad input')\n",
    "exit_none": "import sys\nsys.exit()\n",
    "uncaught": "def f():\n    raise ValueError('boom')\n\nf()\n",
    "chained": "try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise KeyError('k')\n",
    "keyboard_interrupt": "print('before', flush=True)\nraise KeyboardInterrupt\n",
    "async_uncaught": textwrap.dedent("""
        import asyncio
        async def main():
            await asyncio.sleep(0)
            raise RuntimeError('inside the loop')
        asyncio.run(main())
    """),
    "where": textwrap.dedent("""
        '''doc'''
        import sys, __main__
        print(sys.argv)
        print(sys.path[0])
        print(__name__, __file__, __doc__, __spec__, __package__, __cached__, type(__loader__).__name__)
        print(__main__.__dict__ is globals(), sys.modules['__main__'] is __main__)
    """),
}

# Where stock asyncio's traceback shows base_events.run_until_complete, ferroloop's shows its
# own (the loop's method is Python in both; only the file differs).
_LOOP_FRAME = re.compile(
    r'  File "[^"]*(?:asyncio/base_events|ferroloop/_loop)\.py", line \d+, in run_until_complete\n'
)


def _normalised(text):
    return _LOOP_FRAME.sub('  File "<loop>", in run_until_complete\n', text)


def _python(script, *args, cwd):
    return subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.parametrize("command", ["run", "doctor", "trace"])
@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_ends_as_python_does(tmp_path, command, case):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "prog.py").write_text(PROGRAMS[case])
    script = os.path.join("sub", "prog.py")  # relative, as users type it: argv keeps it so
    want = _python(script, "a", "-x", cwd=tmp_path)
    extra = ["-o", str(tmp_path / "t.html")] if command == "trace" else []
    got = run_cli(command, *extra, script, "a", "-x", cwd=tmp_path)
    assert got.returncode == want.returncode, got.stderr
    if command == "run":
        assert got.stdout == want.stdout
        assert _normalised(got.stderr) == _normalised(want.stderr)
    else:  # the x-ray's own report follows what the program printed
        assert got.stdout.startswith(want.stdout)
        assert _normalised(got.stderr).startswith(_normalised(want.stderr)), got.stderr
    assert "ferroloop/_cli.py" not in got.stderr and "ferroloop/_script.py" not in got.stderr
    assert "runpy" not in got.stderr
    if case == "keyboard_interrupt":
        assert want.returncode == -2  # python ends itself by SIGINT after the traceback


def test_keyboard_interrupt_runs_atexit_then_dies_by_sigint(tmp_path):
    (tmp_path / "p.py").write_text(
        "import atexit\natexit.register(print, 'atexit ran')\nraise KeyboardInterrupt\n"
    )
    want = _python("p.py", cwd=tmp_path)
    got = run_cli("run", "p.py", cwd=tmp_path)
    assert got.returncode == want.returncode == -2
    assert got.stdout == want.stdout == "atexit ran\n"


@pytest.mark.parametrize("command", ["run", "doctor", "trace"])
def test_missing_script_as_python(tmp_path, command):
    want = _python("nosuch.py", cwd=tmp_path)
    got = run_cli(command, "nosuch.py", cwd=tmp_path)
    assert want.returncode == got.returncode == 2
    assert got.stderr.startswith(want.stderr), got.stderr
    assert "can't open file" in got.stderr and "Traceback" not in got.stderr


def test_module_errors_as_python(tmp_path):
    (tmp_path / "boom.py").write_text(PROGRAMS["uncaught"])
    env = {**os.environ, "PYTHONPATH": ""}
    for name in ("boom", "no_such_module"):
        want = subprocess.run(
            [sys.executable, "-m", name], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
        )
        got = run_cli("run", "-m", name, cwd=tmp_path, env=env)
        assert got.returncode == want.returncode == 1
        assert got.stderr == want.stderr  # python -m shows runpy's two frames; so do we
        assert "ferroloop" not in got.stderr


def test_main_module_is_the_script(tmp_path):
    # Objects defined by the script pickle by reference to __main__, as under python.
    (tmp_path / "p.py").write_text(
        textwrap.dedent("""
        import asyncio, pickle
        class Point:
            pass
        async def main():
            print(type(pickle.loads(pickle.dumps(Point()))).__qualname__, type(asyncio.get_running_loop()).__module__)
        asyncio.run(main())
    """)
    )
    p = run_cli("run", "p.py", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["Point", "ferroloop._loop"]
