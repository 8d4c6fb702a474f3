"""pytest plugin (entry point `pytest11`): `pytest --ferroloop`, or `ferroloop = true` in the
ini file, runs pytest-asyncio's and anyio's tests on ferroloop. Without either, it does
nothing at all: no hook, no fixture is registered.

- pytest-asyncio >= 1.4: its `pytest_asyncio_loop_factories` hook, answered with
  {"ferroloop": ferroloop.new_event_loop}. An older pytest-asyncio (no such hook) gets a
  warning and is left alone: overriding its `event_loop_policy` fixture would need the
  policy system 3.14 deprecates, and would beat a conftest's own choice.
- anyio: its `anyio_backend` fixture, "asyncio" becoming
  ("asyncio", {"loop_factory": ferroloop.new_event_loop}); other backends (trio) stay.

A test's own choice still wins: a conftest's `anyio_backend` fixture, or a
`pytest_asyncio_loop_factories` hook in a conftest, overrides the plugin's.
"""

import pytest

_HELP = "run pytest-asyncio and anyio tests on ferroloop's event loop"


def pytest_addoption(parser):
    parser.getgroup("ferroloop").addoption("--ferroloop", action="store_true", default=None, help=_HELP)
    parser.addini("ferroloop", type="bool", default=False, help=_HELP)


def _enabled(config):
    flag = config.getoption("ferroloop")
    return bool(config.getini("ferroloop")) if flag is None else flag


def pytest_configure(config):
    if not _enabled(config):
        return
    pm = config.pluginmanager
    if pm.has_plugin("asyncio"):  # pytest-asyncio
        if hasattr(config.hook, "pytest_asyncio_loop_factories"):
            pm.register(_AsyncioLoopFactories(), "ferroloop-asyncio")
        else:
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    "--ferroloop: this pytest-asyncio has no pytest_asyncio_loop_factories hook "
                    "(pytest-asyncio >= 1.4 has it); its tests run on asyncio's own loop"
                ),
                stacklevel=2,
            )


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    # anyio parametrizes its own `anyio_backend` fixture with the backend names; its
    # "asyncio" param becomes ("asyncio", {"loop_factory": ...}). A conftest's own
    # anyio_backend is another fixture, left as it is.
    pm = session.config.pluginmanager
    if not _enabled(session.config) or not pm.has_plugin("anyio"):
        return
    fm = getattr(session, "_fixturemanager", None)
    defs = fm.getfixturedefs("anyio_backend", session) if fm is not None else None
    anyio_own = [fd for fd in defs or () if getattr(fd.func, "__module__", None) == "anyio.pytest_plugin"]
    for fd in anyio_own:
        if fd.params:
            names = [p if isinstance(p, str) else p[0] for p in fd.params]
            fd.params = [
                ("asyncio", {"loop_factory": _new_event_loop}) if p == "asyncio" else p for p in fd.params
            ]
            fd.ids = names
    if not anyio_own:  # a pytest or anyio this does not know: override the fixture instead
        pm.register(_AnyioBackend, "ferroloop-anyio")


def pytest_report_header(config):
    if _enabled(config):
        import ferroloop

        return [f"ferroloop: {ferroloop.__version__} (pytest-asyncio and anyio tests run on it)"]
    return None


def _new_event_loop():
    import ferroloop

    return ferroloop.new_event_loop()


class _AsyncioLoopFactories:
    @pytest.hookimpl(trylast=True)  # firstresult: a conftest's own answer comes first
    def pytest_asyncio_loop_factories(self, config, item):
        return {"ferroloop": _new_event_loop}


def _anyio_backends():
    try:
        from anyio.pytest_plugin import get_available_backends
    except ImportError:
        return ["asyncio"]
    return list(get_available_backends())


class _AnyioBackend:  # registered as the class itself: its fixture is a plain function
    @pytest.fixture(scope="module", params=_anyio_backends())
    @staticmethod
    def anyio_backend(request):
        if request.param == "asyncio":
            return "asyncio", {"loop_factory": _new_event_loop}
        return request.param
