"""`python -m ferroloop run`: unchanged scripts land on ferroloop."""

import subprocess
import sys
import textwrap


SCRIPT = textwrap.dedent("""
    import asyncio, sys
    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        print(type(loop).__module__, type(loop).__name__, sys.argv[1:], loop.get_debug())
    if __name__ == "__main__":
        asyncio.run(main())
""")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ferroloop", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


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
    p = subprocess.run([sys.executable, "-m", "ferroloop", "run", "-m", "mymod", "x"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ferroloop._loop Loop ['x'] False"


def test_script_error_exit_status(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import asyncio\nasync def main():\n    raise SystemExit(3)\nasyncio.run(main())\n")
    p = run_cli("run", str(script))
    assert p.returncode == 3


def test_missing_script():
    p = run_cli("run")
    assert p.returncode != 0
    assert "give a script" in p.stderr


def test_version():
    p = run_cli("version")
    assert p.returncode == 0 and p.stdout.startswith("ferroloop ")
