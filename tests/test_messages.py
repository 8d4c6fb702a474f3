"""Messages a program may show or match, as the running Python's asyncio words them
(issue 11 finding 9). Each runs on ferroloop and on stock asyncio."""

import asyncio
import os
import sys

import pytest

NEW_BIND_TEXT = sys.version_info >= (3, 13)  # str(err).lower() instead of strerror.lower()


def test_port_in_use(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        inner = "[errno 98] address already in use" if NEW_BIND_TEXT else "address already in use"
        expected = f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): {inner}"
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port, reuse_address=False)
        assert info.value.errno == 98 and str(info.value) == expected
        with pytest.raises(OSError) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, local_addr=("127.0.0.1", port))
        assert info.value.errno == 98 and str(info.value) == expected
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.parametrize("value", [False, True])
def test_datagram_endpoint_has_no_reuse_address(loop, value):
    async def main():
        with pytest.raises(TypeError, match="got an unexpected keyword argument 'reuse_address'"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), reuse_address=value
            )

    loop.run_until_complete(main())


@pytest.mark.parametrize(
    "args, message",
    [
        ((-1,), "high (-1) must be >= low (-1) must be >= 0"),
        ((-5,), "high (-5) must be >= low (-2) must be >= 0"),
        ((1, 2), "high (1) must be >= low (2) must be >= 0"),
        ((None, -5), "high (-20) must be >= low (-5) must be >= 0"),
    ],
)
def test_write_buffer_limit_errors(loop, args, message):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname()[:2])
        r, w = os.pipe()
        wt, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb"))
        dt, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        for t in (tr, wt, dt):
            with pytest.raises(ValueError) as info:
                t.set_write_buffer_limits(*args)
            assert str(info.value) == message
            t.close()
        os.close(r)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_writes_after_write_eof(loop):
    """3.11 joins writelines() into write(): its messages name write(), and a bad item is
    refused before anything else; 3.12+ name writelines()."""
    joined = sys.version_info < (3, 12)

    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname()[:2])
        tr.write_eof()
        tr.write_eof()  # twice: nothing
        with pytest.raises(RuntimeError, match=r"^Cannot call write\(\) after write_eof\(\)$"):
            tr.write(b"x")
        name = "write" if joined else "writelines"
        for data in ([b"x"], []):
            with pytest.raises(RuntimeError) as info:
                tr.writelines(data)
            assert str(info.value) == f"Cannot call {name}() after write_eof()"
        with pytest.raises(TypeError if joined else RuntimeError) as info:
            tr.writelines(["x"])
        if joined:
            assert str(info.value) == "sequence item 0: expected a bytes-like object, str found"
        tr.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_writelines_bad_item(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname()[:2])
        with pytest.raises(TypeError) as info:
            tr.writelines([b"ok", "x"])
        if sys.version_info < (3, 12):
            assert str(info.value) == "sequence item 1: expected a bytes-like object, str found"
        else:
            assert str(info.value) == "memoryview: a bytes-like object is required, not 'str'"
        tr.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())
