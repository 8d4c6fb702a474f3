"""aiohttp server and client on the same loop: GET/POST with bodies, a 5 MB streamed
download (chunked and through FileResponse / loop.sendfile), 200 concurrent requests."""

import asyncio
import hashlib
import socket
import ssl

import aiohttp
import pytest
from aiohttp import web

MB = 1024 * 1024


def payload(n, seed=b"ferroloop"):
    """n deterministic, non-repeating-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


DOWNLOAD = payload(5 * MB)


def make_app(state):
    async def hello(request):
        name = request.query.get("name", "world")
        return web.json_response({"hello": name, "method": request.method})

    async def echo(request):
        body = await request.read()
        return web.json_response(
            {"len": len(body), "sha256": hashlib.sha256(body).hexdigest(), "ctype": request.content_type}
        )

    async def upper(request):
        text = await request.text()
        return web.Response(text=text.upper(), headers={"X-Len": str(len(text))})

    async def stream(request):
        resp = web.StreamResponse()
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        view = memoryview(DOWNLOAD)
        for i in range(0, len(DOWNLOAD), 64 * 1024):
            await resp.write(view[i : i + 64 * 1024])
        await resp.write_eof()
        return resp

    async def file(request):
        return web.FileResponse(state["file"])

    async def concurrent(request):
        # Every request waits until all of them are in flight at once: proves concurrency.
        state["inflight"] += 1
        state["peak"] = max(state["peak"], state["inflight"])
        if state["inflight"] >= state["expect"]:
            state["all_in"].set()
        await state["all_in"].wait()
        state["inflight"] -= 1
        return web.Response(text=f"ok {request.match_info['i']}")

    async def sleep(request):
        await asyncio.sleep(1)  # the client gives up after 0.3 s; cleanup waits for this
        return web.Response(text="too late")

    async def truncate(request):
        # promises 1 MiB, sends 100 KiB, then drops the connection
        resp = web.StreamResponse(headers={"Content-Length": str(MB)})
        await resp.prepare(request)
        await resp.write(b"t" * (100 * 1024))
        request.transport.abort()
        return resp

    app = web.Application(client_max_size=16 * MB)
    app.router.add_get("/sleep", sleep)
    app.router.add_get("/truncate", truncate)
    app.router.add_get("/hello", hello)
    app.router.add_post("/echo", echo)
    app.router.add_put("/upper", upper)
    app.router.add_get("/stream", stream)
    app.router.add_get("/file", file)
    app.router.add_get("/c/{i}", concurrent)
    return app


class AiohttpServer:
    def __init__(self, state, ssl_context=None):
        self.state = state
        self.ssl_context = ssl_context
        self.runner = None

    async def __aenter__(self):
        self.runner = web.AppRunner(make_app(self.state), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=512, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


def new_state(tmp_path=None):
    state = {"inflight": 0, "peak": 0, "expect": 0, "all_in": asyncio.Event()}
    if tmp_path is not None:
        path = tmp_path / "download.bin"
        path.write_bytes(DOWNLOAD)
        state["file"] = str(path)
    return state


def test_get_and_post_with_bodies(arun):
    async def main():
        async with AiohttpServer(new_state()) as srv, aiohttp.ClientSession() as s:
            async with s.get(f"{srv.url}/hello", params={"name": "ferro"}) as r:
                assert r.status == 200
                assert await r.json() == {"hello": "ferro", "method": "GET"}
            body = payload(300_000, b"post")
            async with s.post(
                f"{srv.url}/echo", data=body, headers={"Content-Type": "application/octet-stream"}
            ) as r:
                assert r.status == 200
                assert await r.json() == {
                    "len": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "ctype": "application/octet-stream",
                }
            async with s.post(f"{srv.url}/echo", json={"k": [1, 2, 3]}) as r:
                got = await r.json()
                assert got["ctype"] == "application/json"
                assert got["len"] == len(b'{"k": [1, 2, 3]}')
            async with s.put(f"{srv.url}/upper", data="héllo wörld") as r:
                assert await r.text() == "HÉLLO WÖRLD"
                assert r.headers["X-Len"] == "11"
            async with s.get(f"{srv.url}/missing") as r:
                assert r.status == 404

    arun(main)


async def download(session, url):
    h = hashlib.sha256()
    n = chunks = 0
    async with session.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        async for chunk in r.content.iter_chunked(256 * 1024):
            h.update(chunk)
            n += len(chunk)
            chunks += 1
    assert n == len(DOWNLOAD)
    assert h.hexdigest() == hashlib.sha256(DOWNLOAD).hexdigest()
    assert chunks > 1


def test_streamed_download_5mb(arun):
    """A StreamResponse written in 64 KiB chunks, read as a stream by the client."""

    async def main():
        async with AiohttpServer(new_state()) as srv, aiohttp.ClientSession() as s:
            await download(s, srv.url + "/stream")

    arun(main)


def test_file_response_download_5mb(arun, tmp_path):
    """web.FileResponse: aiohttp sends the file with loop.sendfile() (os.sendfile).
    (FINDINGS.md F1, fixed.)"""

    async def main():
        async with AiohttpServer(new_state(tmp_path)) as srv, aiohttp.ClientSession() as s:
            await download(s, srv.url + "/file")

    arun(main)


def test_200_concurrent_requests(arun):
    N = 200

    async def main():
        state = new_state()
        state["expect"] = N
        async with AiohttpServer(state) as srv:
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as s:

                async def one(i):
                    async with s.get(f"{srv.url}/c/{i}") as r:
                        assert r.status == 200
                        return await r.text()

                results = await asyncio.gather(*(one(i) for i in range(N)))
        assert results == [f"ok {i}" for i in range(N)]
        assert state["peak"] == N  # all 200 were in flight at the same time
        assert state["inflight"] == 0

    arun(main)


def test_https(arun, tls):
    async def main():
        async with AiohttpServer(new_state(), ssl_context=tls.server_context()) as srv:
            conn = aiohttp.TCPConnector(ssl=tls.client_context())
            async with aiohttp.ClientSession(connector=conn) as s:
                async with s.get(f"{srv.url}/hello", params={"name": "tls"}) as r:
                    assert await r.json() == {"hello": "tls", "method": "GET"}
                    assert r.connection is None or r.connection.transport.get_extra_info("ssl_object")
                body = payload(MB, b"https")
                async with s.post(f"{srv.url}/echo", data=body) as r:
                    assert (await r.json())["sha256"] == hashlib.sha256(body).hexdigest()
                await download(s, srv.url + "/stream")
                # 50 concurrent TLS connections
                conn2 = aiohttp.TCPConnector(ssl=tls.client_context(), limit=0, force_close=True)
                async with aiohttp.ClientSession(connector=conn2) as s2:
                    rs = await asyncio.gather(
                        *(s2.get(f"{srv.url}/hello", params={"name": str(i)}) for i in range(50))
                    )
                    assert [(await r.json())["hello"] for r in rs] == [str(i) for i in range(50)]
                    for r in rs:
                        r.release()

    arun(main)


def test_client_faults(arun, tls):
    """What aiohttp users see on the loop: a timeout, a response cut short by the server,
    a refused connection, a certificate for another host — each aiohttp's own exception
    wrapping asyncio's, and the session still usable afterwards."""

    async def main():
        async with AiohttpServer(new_state()) as srv, aiohttp.ClientSession() as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.get(f"{srv.url}/sleep", timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientPayloadError):
                async with s.get(f"{srv.url}/truncate") as r:
                    await r.read()
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))
            dead_port = dead.getsockname()[1]
            dead.close()
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await s.get(f"http://127.0.0.1:{dead_port}/")
            assert isinstance(info.value.os_error, ConnectionRefusedError)
            async with s.get(f"{srv.url}/hello") as r:  # still fine
                assert r.status == 200

        async with AiohttpServer(new_state(), ssl_context=tls.server_context()) as srv:
            conn = aiohttp.TCPConnector(ssl=tls.client_context())
            async with aiohttp.ClientSession(connector=conn) as s:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                    await s.get(f"{srv.url}/hello", server_hostname="wrong.example.org")
                assert isinstance(info.value.certificate_error, ssl.SSLCertVerificationError)
                assert info.value.certificate_error.verify_code == 62  # hostname mismatch

    arun(main)
