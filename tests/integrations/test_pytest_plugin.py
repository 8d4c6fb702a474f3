"""The pytest plugin: `pytest --ferroloop` (or `ferroloop = true` in the ini file) runs real
pytest-asyncio and anyio tests on ferroloop; without it nothing changes. Each case is a
real pytest run in a subprocess, on a test file that reports the loop it ran on."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytest_asyncio")
pytest.importorskip("anyio")

TESTS = textwrap.dedent("""
    import asyncio
    import pytest
    import pytest_asyncio

    def _loop_module():
        return type(asyncio.get_running_loop()).__module__

    @pytest.mark.asyncio
    async def test_pytest_asyncio():
        print("\\nLOOP pytest-asyncio", _loop_module())

    @pytest_asyncio.fixture
    async def loop_of_fixture():
        return _loop_module()

    @pytest.mark.asyncio
    async def test_pytest_asyncio_fixture(loop_of_fixture):
        print("\\nLOOP pytest-asyncio-fixture", loop_of_fixture, _loop_module())

    @pytest.mark.anyio
    async def test_anyio(anyio_backend):
        import anyio
        await anyio.sleep(0)
        print("\\nLOOP anyio", _loop_module())
""")


def _pytest(tmp_path, *args, ini="", file="test_loops.py"):
    (tmp_path / "test_loops.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not trio",
            *args,
            *([file] if file else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    loops = sorted(line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("LOOP "))
    return loops, p.stdout


def test_flag_runs_both_plugins_on_ferroloop(tmp_path):
    loops, out = _pytest(tmp_path, "--ferroloop")
    assert loops == [
        "anyio ferroloop._loop",
        "pytest-asyncio ferroloop._loop",
        "pytest-asyncio-fixture ferroloop._loop ferroloop._loop",
    ], out


def test_ini_option_runs_on_ferroloop(tmp_path):
    loops, out = _pytest(tmp_path, ini="ferroloop = true\n")
    assert all("ferroloop._loop" in line for line in loops) and len(loops) == 3, out


def test_without_the_flag_nothing_changes(tmp_path):
    loops, out = _pytest(tmp_path)
    assert loops == [
        "anyio asyncio.unix_events",
        "pytest-asyncio asyncio.unix_events",
        "pytest-asyncio-fixture asyncio.unix_events asyncio.unix_events",
    ], out


def test_flag_overrides_a_false_ini(tmp_path):
    loops, out = _pytest(tmp_path, "--ferroloop", ini="ferroloop = false\n")
    assert len(loops) == 3 and all("ferroloop._loop" in line for line in loops), out


def test_a_conftest_choice_still_wins(tmp_path):
    # A project that picks its own anyio backend keeps it, flag or not.
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        import pytest
        @pytest.fixture
        def anyio_backend():
            return "asyncio"
    """)
    )
    loops, out = _pytest(tmp_path, "--ferroloop")
    assert "anyio asyncio.unix_events" in loops, out
    assert "pytest-asyncio ferroloop._loop" in loops, out


def test_a_conftest_loop_factories_hook_still_wins(tmp_path):
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        import asyncio
        def pytest_asyncio_loop_factories(config, item):
            return {"stock": asyncio.new_event_loop}
    """)
    )
    loops, out = _pytest(tmp_path, "--ferroloop")
    assert "pytest-asyncio asyncio.unix_events" in loops, out
    assert "anyio ferroloop._loop" in loops, out


def test_recipe_without_the_plugin_marks_choose_factories(tmp_path):
    # docs/integrations.md: pytest-asyncio's own way, a conftest hook naming the factories and
    # a mark choosing among them; the plugin is not involved (no flag).
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        import asyncio
        import ferroloop
        def pytest_asyncio_loop_factories(config, item):
            return {"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    """)
    )
    (tmp_path / "test_marks.py").write_text(
        textwrap.dedent("""
        import asyncio
        import pytest

        @pytest.mark.asyncio(loop_factories=["ferroloop"])
        async def test_only_ferroloop():
            print("\\nLOOP only-ferroloop", type(asyncio.get_running_loop()).__module__)

        @pytest.mark.asyncio
        async def test_both():
            print("\\nLOOP both", type(asyncio.get_running_loop()).__module__)
    """)
    )
    loops, out = _pytest(tmp_path, "test_marks.py", file=None)
    assert loops == ["both asyncio.unix_events", "both ferroloop._loop", "only-ferroloop ferroloop._loop"], (
        out
    )


def test_plugin_is_registered_by_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert eps.get("ferroloop") == "ferroloop.pytest_plugin"
