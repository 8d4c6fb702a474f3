"""httpx's AsyncClient against an aiohttp server, and uvicorn serving a Starlette app
in-process (lifespan, JSON, bodies, streaming), queried with httpx."""

import asyncio
import contextlib
import hashlib
import socket

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from .test_compat_aiohttp import DOWNLOAD, AiohttpServer, new_state, payload

MB = 1024 * 1024


# -- httpx against aiohttp ------------------------------------------------------------------


def test_httpx_against_aiohttp(arun):
    async def main():
        async with (
            AiohttpServer(new_state()) as srv,
            httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
        ):
            r = await client.get("/hello", params={"name": "httpx"})
            assert r.status_code == 200
            assert r.json() == {"hello": "httpx", "method": "GET"}

            body = payload(1 * MB, b"httpx")
            r = await client.post("/echo", content=body, headers={"content-type": "application/octet-stream"})
            assert r.json() == {
                "len": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "ctype": "application/octet-stream",
            }

            h = hashlib.sha256()
            n = 0
            async with client.stream("GET", "/stream") as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    h.update(chunk)
                    n += len(chunk)
            assert n == len(DOWNLOAD)
            assert h.hexdigest() == hashlib.sha256(DOWNLOAD).hexdigest()

            rs = await asyncio.gather(*(client.get("/hello", params={"name": str(i)}) for i in range(50)))
            assert [r.json()["hello"] for r in rs] == [str(i) for i in range(50)]

            r = await client.get("/missing")
            assert r.status_code == 404

    arun(main)


# -- uvicorn + Starlette, queried with httpx --------------------------------------------------


def make_starlette(events):
    async def root(request):
        return JSONResponse({"app": "starlette", "started": events["startup"]})

    async def echo(request):
        body = await request.body()
        return JSONResponse({"len": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def stream(request):
        n = int(request.query_params["n"])

        async def gen():
            for i in range(n):
                yield f"line {i}\n".encode()
                if i % 100 == 0:
                    await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    async def slow(request):
        await asyncio.sleep(0.2)
        return PlainTextResponse(f"slow {request.path_params['i']}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events["startup"] = True
        yield
        events["shutdown"] = True

    return Starlette(
        routes=[
            Route("/", root),
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            Route("/slow/{i}", slow),
        ],
        lifespan=lifespan,
    )


def test_uvicorn_starlette_with_httpx(arun):
    async def main():
        events = {"startup": False, "shutdown": False}
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            make_starlette(events), log_level="warning", lifespan="on", http="h11", access_log=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                assert not serving.done(), serving
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                r = await client.get("/")
                assert r.json() == {"app": "starlette", "started": True}

                body = payload(2 * MB, b"uvicorn")
                r = await client.post("/echo", content=body)
                assert r.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}

                async with client.stream("GET", "/stream", params={"n": 5000}) as r:
                    lines = [line async for line in r.aiter_lines()]
                assert lines == [f"line {i}" for i in range(5000)]

                # 20 requests that each sleep 0.2 s: served concurrently, not one by one
                t0 = asyncio.get_running_loop().time()
                rs = await asyncio.gather(*(client.get(f"/slow/{i}") for i in range(20)))
                assert [r.text for r in rs] == [f"slow {i}" for i in range(20)]
                assert asyncio.get_running_loop().time() - t0 < 2.0
        finally:
            server.should_exit = True
            await serving
            sock.close()
        assert events == {"startup": True, "shutdown": True}

    arun(main)
