"""The applications the framework recipes serve (imported by the servers under test, by
name, from this directory). Each answers GET / with the module of the running loop's type:
"ferroloop._loop" when the server really runs on ferroloop."""

import asyncio


def loop_module():
    return type(asyncio.get_running_loop()).__module__


async def asgi_app(scope, receive, send):
    """A bare ASGI app (uvicorn, hypercorn, gunicorn + uvicorn's worker)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = loop_module().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _fastapi_app():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.get("/", response_class=PlainTextResponse)
    async def root():
        return loop_module()

    return app


def aiohttp_app():
    """An aiohttp application factory (web.run_app; gunicorn's aiohttp worker)."""
    from aiohttp import web

    async def root(request):
        return web.Response(text=loop_module())

    app = web.Application()
    app.router.add_get("/", root)
    return app


async def aiohttp_app_factory():
    return aiohttp_app()


def __getattr__(name):
    if name == "fastapi_app":  # built when uvicorn asks for it: fastapi loads only then
        return _fastapi_app()
    raise AttributeError(name)
