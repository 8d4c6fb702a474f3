"""What changes from Python 3.14 on, held here on 3.11-3.13 (3.14 itself cannot be run on
this machine; docs/python-versions.md says what is read from CPython and what is tested).

- ferroloop calls no asyncio API that 3.14 deprecates (asyncio.iscoroutinefunction, the
  policy functions), and imports where the private names it looks up are gone;
- `install()`, `python -m ferroloop run|doctor|trace` land a script's asyncio.run() on
  ferroloop where the policy system is gone (3.16), simulated by deleting it;
- the task-factory contract of each version (3.14 hands the factory name/context/...).
"""

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import unittest.mock

import pytest

import ferroloop
import ferroloop._loop

# -- no deprecated asyncio API ---------------------------------------------------------------


def _forbid(monkeypatch, module, name):
    def deprecated(*args, **kwargs):
        raise AssertionError(f"ferroloop called {module.__name__}.{name}")

    monkeypatch.setattr(module, name, deprecated)


def test_callback_checks_do_not_use_asyncio_iscoroutinefunction(monkeypatch, floop):
    _forbid(monkeypatch, asyncio.coroutines, "iscoroutinefunction")
    _forbid(monkeypatch, asyncio, "iscoroutinefunction")

    async def coro_fn():
        pass

    floop.set_debug(True)  # the debug checks go through the Python helper
    for method in (floop.call_soon, floop.call_soon_threadsafe):
        with pytest.raises(TypeError, match="coroutines cannot be used with"):
            method(coro_fn)
    # asyncio's marker (mock.AsyncMock carries it) counts as a coroutine function, as in asyncio
    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
        floop.call_soon(unittest.mock.AsyncMock())
    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        floop.add_signal_handler(2, coro_fn)


def test_same_verdict_as_asyncio_on_coroutine_functions():
    from ferroloop._handles import iscoroutinefunction

    async def a():
        pass

    def b():
        pass

    for f in (a, b, unittest.mock.AsyncMock(), unittest.mock.Mock(), lambda: None, print):
        assert iscoroutinefunction(f) == asyncio.coroutines.iscoroutinefunction(f), f


def _python(code, *args, cwd=None, prelude=""):
    source = textwrap.dedent(prelude) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", source, *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_install_raises_no_deprecation_warning():
    p = _python("""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        import asyncio, ferroloop
        ferroloop.install()
        async def main():
            return type(asyncio.get_running_loop()).__module__
        print(asyncio.run(main()))
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ferroloop._loop"


# Where the policy system is gone (3.16 removes it): none of its names in asyncio.
_NO_POLICIES = """
    import asyncio, asyncio.events, asyncio.unix_events
    for mod in (asyncio, asyncio.events, asyncio.unix_events):
        for name in ("set_event_loop_policy", "get_event_loop_policy", "_set_event_loop_policy",
                     "_get_event_loop_policy", "AbstractEventLoopPolicy", "_AbstractEventLoopPolicy",
                     "BaseDefaultEventLoopPolicy", "_BaseDefaultEventLoopPolicy", "DefaultEventLoopPolicy",
                     "_UnixDefaultEventLoopPolicy", "_DefaultEventLoopPolicy"):
            if name in vars(mod):
                delattr(mod, name)
"""


def test_imports_without_the_policy_system():
    p = _python(
        prelude=_NO_POLICIES,
        code="""
        import ferroloop
        print(ferroloop.EventLoopPolicy.__mro__[1].__name__, type(ferroloop.EventLoopPolicy().new_event_loop()).__name__)
    """,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["object", "Loop"]


def test_install_without_the_policy_system():
    p = _python(
        prelude=_NO_POLICIES,
        code="""
        import asyncio, ferroloop
        ferroloop.install()
        ferroloop.install()  # twice is once
        def kind():
            return type(asyncio.get_running_loop()).__module__
        async def main():
            return kind()
        print(asyncio.run(main()))
        with asyncio.Runner() as r:
            print(r.run(main()))
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as r:  # an explicit choice stays
            print(r.run(main()))
        loop = asyncio.new_event_loop()
        print(type(loop).__module__)
        loop.close()
        print(asyncio.Runner.__mro__[1] is asyncio.runners.Runner.__mro__[1], asyncio.Runner.__name__)
    """,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [
        "ferroloop._loop",
        "ferroloop._loop",
        "asyncio.unix_events",
        "ferroloop._loop",
        "True",
        "Runner",
    ]


@pytest.mark.parametrize("command", ["run", "doctor", "trace"])
def test_cli_without_the_policy_system(tmp_path, command):
    (tmp_path / "prog.py").write_text(
        textwrap.dedent("""
        import asyncio
        async def main():
            print("LOOP", type(asyncio.get_running_loop()).__module__)
        asyncio.run(main())
    """)
    )
    extra = ["-o", str(tmp_path / "t.html")] if command == "trace" else []
    cli = """
        import sys
        from ferroloop._cli import main
        sys.exit(main(sys.argv[1:]))
    """
    p = _python(cli, command, *extra, "prog.py", cwd=tmp_path, prelude=_NO_POLICIES)
    assert p.returncode == 0, p.stderr
    assert "LOOP ferroloop._loop" in p.stdout.splitlines()


# -- the task-factory contract of each version ----------------------------------------------


def _factory_calls(loop, **create_kwargs):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append(sorted(kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def main():
        async def work():
            return 1

        loop.set_task_factory(factory)
        t = loop.create_task(work(), **create_kwargs)
        await t
        return t.get_name()

    return calls, loop.run_until_complete(main())


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="the 3.11-3.13 contract")
def test_task_factory_contract_up_to_313(loop):
    # factory(loop, coro) when no context is given, context= when one is; the name set after
    assert _factory_calls(loop)[0] == [[]]
    calls, name = _factory_calls(loop, name="job", context=contextvars.copy_context())
    assert (calls, name) == ([["context"]], "job")


def test_task_factory_contract_of_314(floop, monkeypatch):
    # 3.14: every keyword create_task got goes to the factory (base_events.create_task's
    # `self._task_factory(self, coro, **kwargs)`), and the factory names the task.
    monkeypatch.setattr(ferroloop._loop, "_FACTORY_GETS_ALL_KWARGS", True)
    assert _factory_calls(floop)[0] == [[]]
    calls, name = _factory_calls(floop, name="job", context=contextvars.copy_context())
    assert (calls, name) == ([["context", "name"]], "job")
    if sys.version_info >= (3, 12):
        calls, _ = _factory_calls(floop, name="e", eager_start=True)
        assert calls == [["eager_start", "name"]]


# -- free-threaded builds ---------------------------------------------------------------------


def test_refuses_to_load_with_the_gil_forced_off():
    # On a free-threaded build with PYTHON_GIL=0 the GIL stays off even for a gil_used module
    # (simulated: this build has a GIL); ferroloop's state needs it, so the import refuses.
    p = _python("""
        import sys
        sys._is_gil_enabled = lambda: False
        try:
            import ferroloop
        except ImportError as e:
            print("refused:", "PYTHON_GIL=0" in str(e))
    """)
    assert p.stdout.strip() == "refused: True", p.stderr
