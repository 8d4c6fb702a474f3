"""websockets (its asyncio implementation): an echo server and client, 1,000 messages
of text and binary, in order, plus ping/pong and a clean close."""

import asyncio
import hashlib

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

N = 1000


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def message(i):
    if i % 2:
        return f"text message {i} " + "é" * (i % 50)
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 64)  # up to 2 KiB binary


def test_echo_1000_messages(arun):
    async def main():
        async with serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", max_size=2**20) as ws:
                # one at a time: request, response
                for i in range(N // 2):
                    await ws.send(message(i))
                    assert await ws.recv() == message(i)

                # the other half pipelined: all sent, then all received, in order
                async def sender():
                    for i in range(N // 2, N):
                        await ws.send(message(i))

                send_task = asyncio.create_task(sender())
                got = [await ws.recv() for _ in range(N // 2, N)]
                await send_task
                assert got == [message(i) for i in range(N // 2, N)]
                assert sum(isinstance(m, str) for m in got) == N // 4
                latency = await (await ws.ping())
                assert latency >= 0
                # a large frame too: 1 MiB - 1 KiB binary
                big = bytes(range(256)) * 4092
                await ws.send(big)
                assert await ws.recv() == big
            assert ws.close_code == 1000
            # the server side sees the clean close and ends its handler
            try:
                await ws.recv()
            except ConnectionClosedOK:
                pass

    arun(main)


def test_wss_and_abrupt_close(arun, tls):
    """websockets over TLS; then a server that drops the TCP connection without a closing
    handshake: the client gets ConnectionClosedError (1006), as on asyncio."""

    async def main():
        async def handler(ws):
            async for msg in ws:
                if msg == "drop":
                    ws.transport.abort()
                    return
                await ws.send(msg[::-1])

        async with serve(handler, "127.0.0.1", 0, ssl=tls.server_context()) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"wss://localhost:{port}", ssl=tls.client_context()) as ws:
                for i in range(100):
                    await ws.send(f"tls {i}")
                    assert await ws.recv() == f"tls {i}"[::-1]
                await ws.send("drop")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd is None  # no close frame received
            assert ws.close_code == 1006

    arun(main)
