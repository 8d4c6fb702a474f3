"""gunicorn worker classes whose event loop is ferroloop's, made by its factory (no event
loop policy is set: what 3.14 deprecates and 3.16 removes is not needed).

    gunicorn app:asgi -k ferroloop.integrations.gunicorn.UvicornWorker
    gunicorn app:make_app -k ferroloop.integrations.gunicorn.AiohttpWorker

Each class is built on first use, so this module imports without uvicorn or aiohttp.
"""

import asyncio

LOOP = "ferroloop:new_event_loop"  # uvicorn's `loop` setting: a module:attr loop factory

__all__ = ("UvicornWorker", "AiohttpWorker")  # noqa: F822  (built on first use by __getattr__)


def _uvicorn_worker():
    try:
        from uvicorn_worker import UvicornWorker as base  # uvicorn's worker, in its own package
    except ImportError:
        from uvicorn.workers import UvicornWorker as base  # older uvicorn (deprecated there)

    class UvicornWorker(base):
        """uvicorn's gunicorn worker, serving on ferroloop."""

        CONFIG_KWARGS = {**base.CONFIG_KWARGS, "loop": LOOP}

    return UvicornWorker


def _aiohttp_worker():
    from aiohttp.worker import GunicornWebWorker
    from gunicorn.workers.base import Worker

    class AiohttpWorker(GunicornWebWorker):
        """aiohttp's gunicorn worker, serving on a ferroloop loop from its factory."""

        def init_process(self):
            import ferroloop

            self.loop = ferroloop.new_event_loop()
            if hasattr(asyncio, "set_event_loop"):  # for code that asks get_event_loop()
                asyncio.set_event_loop(self.loop)
            # GunicornWebWorker.init_process would close a loop and make asyncio's own.
            Worker.init_process(self)

    return AiohttpWorker


_BUILDERS = {"UvicornWorker": _uvicorn_worker, "AiohttpWorker": _aiohttp_worker}


def __getattr__(name):
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = builder()
    cls.__module__ = __name__
    cls.__qualname__ = name
    globals()[name] = cls
    return cls
