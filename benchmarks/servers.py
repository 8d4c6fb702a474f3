"""The servers of the network benchmarks, written against the public asyncio API only.

`start(kind, addr)` starts one on the running loop and returns where it listens
("host:port" or a Unix path). The load comes from outside (the Rust client or wrk).
"""

import asyncio
import os

HTTP_BODY = b"Hello, World!"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(HTTP_BODY)).encode()
    + b"\r\n\r\n"
    + HTTP_BODY
)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def stream_echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive: answers each complete GET head with a fixed 200."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        n = buf.count(b"\r\n\r\n")
        if n:
            self.transport.write(HTTP_RESPONSE * n)
            buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
        self.buf = buf


class BulkProtocol(asyncio.Protocol):
    """Answers an 8-byte big-endian count with that many bytes, honouring flow control."""

    CHUNK = b"b" * (1024 * 1024)

    def connection_made(self, transport):
        self.transport = transport
        self.left = 0
        self.paused = False
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while len(self.buf) >= 8:
            self.left += int.from_bytes(self.buf[:8], "big")
            self.buf = self.buf[8:]
        self._pump()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._pump()

    def _pump(self):
        chunk = self.CHUNK
        while self.left and not self.paused:
            n = min(self.left, len(chunk))
            self.transport.write(chunk if n == len(chunk) else chunk[:n])
            self.left -= n


def tls_context():
    """The server context of the TLS rows: the certificate the runner made
    (FERROLOOP_BENCH_CERT = directory holding cert.pem and key.pem)."""
    import ssl

    d = os.environ["FERROLOOP_BENCH_CERT"]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))
    return ctx


def _hostport(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def _bound(server):
    sockname = server.sockets[0].getsockname()
    if isinstance(sockname, str):
        return sockname
    return f"{sockname[0]}:{sockname[1]}"


async def _aiohttp(host, port, ssl_context=None):
    from aiohttp import web

    async def hello(request):
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
    await site.start()
    sockname = runner.addresses[0]
    return f"{sockname[0]}:{sockname[1]}"


async def _hello_asgi(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, World!"})


async def _uvicorn(host, port):
    import uvicorn

    config = uvicorn.Config(
        _hello_asgi,
        host=host,
        port=port,
        loop="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    sockname = server.servers[0].sockets[0].getsockname()
    return f"{sockname[0]}:{sockname[1]}"


async def start(kind, addr):
    loop = asyncio.get_running_loop()
    if kind == "tcp_proto":
        host, port = _hostport(addr)
        server = await loop.create_server(EchoProtocol, host, port, backlog=1024)
    elif kind == "tcp_stream":
        host, port = _hostport(addr)
        server = await asyncio.start_server(stream_echo, host, port, backlog=1024)
    elif kind == "unix_proto":
        server = await loop.create_unix_server(EchoProtocol, addr, backlog=1024)
    elif kind == "unix_stream":
        server = await asyncio.start_unix_server(stream_echo, addr, backlog=1024)
    elif kind == "http":
        host, port = _hostport(addr)
        server = await loop.create_server(HttpProtocol, host, port, backlog=1024)
    elif kind == "udp":
        host, port = _hostport(addr)
        transport, _ = await loop.create_datagram_endpoint(UDPEcho, local_addr=(host, port))
        sockname = transport.get_extra_info("sockname")
        return f"{sockname[0]}:{sockname[1]}"
    elif kind == "aiohttp":
        return await _aiohttp(*_hostport(addr))
    elif kind == "uvicorn":
        return await _uvicorn(*_hostport(addr))
    elif kind == "tls_proto":
        host, port = _hostport(addr)
        server = await loop.create_server(EchoProtocol, host, port, backlog=1024, ssl=tls_context())
    elif kind == "tls_stream":
        host, port = _hostport(addr)
        server = await asyncio.start_server(stream_echo, host, port, backlog=1024, ssl=tls_context())
    elif kind == "tls_bulk":
        host, port = _hostport(addr)
        server = await loop.create_server(BulkProtocol, host, port, backlog=1024, ssl=tls_context())
    elif kind == "https_aiohttp":
        return await _aiohttp(*_hostport(addr), ssl_context=tls_context())
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    return _bound(server)
