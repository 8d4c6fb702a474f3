"""TLS on the loop's socket transport (ferroloop's native TLS layer on top): 10 MB each way at once,
a start_tls upgrade, and the faults: a certificate from an unknown CA, a wrong hostname, a
handshake that never completes, a plain-TCP client at a TLS server. Each fault raises the
ssl error asyncio raises and leaves no fd behind (counted while the loop still runs)."""

import asyncio
import hashlib
import ssl

import pytest

from .compatlib import open_fds

MB = 1024 * 1024
SIZE = 10 * MB


def blob(seed, n=SIZE):
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


async def read_exactly_hashing(reader, n):
    h = hashlib.sha256()
    left = n
    while left:
        chunk = await reader.read(min(left, 256 * 1024))
        assert chunk, f"EOF with {left} bytes still due"
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


async def write_in_chunks(writer, data, chunk=512 * 1024):
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        writer.write(view[i : i + chunk])
        await writer.drain()


def test_tls_10mb_both_ways(arun, tls):
    up, down = blob(b"client->server"), blob(b"server->client")

    async def main():
        async def handle(reader, writer):
            # receive 10 MB while sending 10 MB, then report what was received
            sending = asyncio.create_task(write_in_chunks(writer, down))
            digest = await read_exactly_hashing(reader, SIZE)
            await sending
            writer.write(digest.encode() + b"\n")
            await writer.drain()
            assert await reader.read() == b""  # the client's close_notify / EOF
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.client_context(), server_hostname="localhost"
            )
            sslobj = writer.get_extra_info("ssl_object")
            assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
            assert dict(x[0] for x in writer.get_extra_info("peercert")["subject"]).get(
                "organizationalUnitName"
            )
            sending = asyncio.create_task(write_in_chunks(writer, up))
            got = await read_exactly_hashing(reader, SIZE)
            await sending
            assert got == hashlib.sha256(down).hexdigest()
            assert (await reader.readline()).decode().strip() == hashlib.sha256(up).hexdigest()
            writer.write_eof() if writer.can_write_eof() else None
            writer.close()
            await writer.wait_closed()

    arun(main)


def test_start_tls_upgrade(arun, tls):
    async def main():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO AHEAD\n")
            await writer.drain()
            await writer.start_tls(tls.server_context())
            assert writer.get_extra_info("ssl_object") is not None
            data = await reader.readexactly(MB)
            writer.write(hashlib.sha256(data).hexdigest().encode() + b"\n")
            writer.write(data[::-1])
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert writer.get_extra_info("ssl_object") is None
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO AHEAD\n"
            await writer.start_tls(tls.client_context(), server_hostname="localhost")
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            data = blob(b"start_tls", MB)
            writer.write(data)
            await writer.drain()
            assert (await reader.readline()).strip().decode() == hashlib.sha256(data).hexdigest()
            assert await reader.readexactly(MB) == data[::-1]
            writer.close()
            await writer.wait_closed()

    arun(main)


# -- faults -------------------------------------------------------------------------------------


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.02)


async def tls_server(tls, *, wrong=False, seen=None):
    async def handle(reader, writer):  # must never run: the handshake fails first
        seen.append(writer)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.server_context(wrong=wrong))


@pytest.mark.parametrize("case", ["unknown-ca", "wrong-hostname"])
def test_tls_verification_failure(arun, tls, case):
    async def main():
        seen = []
        server = await tls_server(tls, wrong=(case == "unknown-ca"), seen=seen)
        port = server.sockets[0].getsockname()[1]
        hostname = "localhost" if case == "unknown-ca" else "wrong.example.org"
        async with server:
            await settle()
            before = open_fds()
            for _ in range(3):  # each attempt fails the same way and leaks nothing
                with pytest.raises(ssl.SSLCertVerificationError) as info:
                    await asyncio.open_connection(
                        "127.0.0.1", port, ssl=tls.client_context(), server_hostname=hostname
                    )
                err = info.value
                if case == "unknown-ca":
                    assert err.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                    assert "unable to get local issuer certificate" in err.verify_message
                else:
                    assert err.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
                    assert "Hostname mismatch" in err.verify_message
                assert err.reason == "CERTIFICATE_VERIFY_FAILED"
                # the same failure through the protocol API
                with pytest.raises(ssl.SSLCertVerificationError):
                    await asyncio.get_running_loop().create_connection(
                        asyncio.Protocol,
                        "127.0.0.1",
                        port,
                        ssl=tls.client_context(),
                        server_hostname=hostname,
                    )
            await settle()
            assert open_fds() == before, "a failed TLS handshake left an fd open"
            assert seen == []

    arun(main)


def test_tls_handshake_timeout(arun, tls):
    """A peer that accepts TCP but never speaks TLS: the client gives up after
    ssl_handshake_timeout with asyncio's error, and closes its socket."""

    async def main():
        conns = []

        async def silent(reader, writer):
            conns.append(writer)
            await reader.read()  # waits until the client gives up and closes

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            before = open_fds()
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(
                ConnectionAbortedError, match="SSL handshake is taking longer than 0.3 seconds"
            ):
                await asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    ssl=tls.client_context(),
                    server_hostname="localhost",
                    ssl_handshake_timeout=0.3,
                )
            assert 0.25 < asyncio.get_running_loop().time() - t0 < 5
            await settle()
            for w in conns:
                w.close()
                await w.wait_closed()
            await settle()
            assert open_fds() == before

    arun(main)


def test_plain_client_at_tls_server(arun, tls):
    """Garbage instead of a ClientHello: the server drops the connection (the client sees
    EOF), its handler never runs, and nothing is left open."""

    async def main():
        seen = []
        server = await tls_server(tls, seen=seen)
        port = server.sockets[0].getsockname()[1]
        async with server:
            before = open_fds()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass
            writer.close()
            await writer.wait_closed()
            await settle()
            assert open_fds() == before
            assert seen == []

    arun(main)
