"""loop.sendfile (over a transport) and loop.sock_sendfile (over a socket): zero-copy
sendfile(2), one native call per chunk (src/sendfile.rs: asyncio's error mapping, no
Python os.sendfile on the loop thread); where that cannot serve (not a regular file, a
TLS transport) and fallback=True, the file read in blocks in the default executor and
sent. Both methods share the chunk loop and the fallback loop; what differs is how each
waits for the socket and sends a block.
"""

import io
import os
import socket
from asyncio import constants, exceptions, tasks

from ._ferroloop import sendfile_chunk
from ._sockets import check_ssl_socket

# Linux sends at most this many bytes per sendfile(2) call (MAX_RW_COUNT).
_MAX_CHUNK = 0x7FFF_F000


async def _send_chunks(fd, fileno, offset, end, wait_writable, closed=None, yield_each=False):
    """sendfile(2) from `fileno` at `offset` up to `end` into socket `fd`: `wait_writable()`
    when the socket refuses, `closed()` checked before each chunk, a loop turn after each
    one with `yield_each`. Returns the bytes sent; the file's position ends after them."""
    total = 0
    try:
        while offset + total < end:
            if closed is not None and closed():
                raise ConnectionError("Connection closed by peer")
            sent = sendfile_chunk(
                fd, fileno, offset + total, min(end - offset - total, _MAX_CHUNK), first=total == 0
            )
            if sent is None:
                await wait_writable()
                continue
            if sent == 0:
                break  # the file ended early
            total += sent
            if yield_each:
                await tasks.sleep(0)
        return total
    finally:
        if total > 0:
            os.lseek(fileno, offset + total, os.SEEK_SET)


class SendfileMixin:
    """sendfile and sock_sendfile.

    Needs from the loop: sock_sendall, _wait_writable (SocketsMixin), run_in_executor
    (Loop), create_future, get_debug (CoreLoop)."""

    @staticmethod
    def _check_sendfile_params(sock, file, offset, count):
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not sock.type == socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def _sendfile_fallback_blocks(self, file, offset, count, send, drain=None):
        """Read the file in blocks in the default executor and `await send(block)` each;
        `await drain()` after each block, if given. Returns the bytes sent; the file's
        position ends after them."""
        if offset:
            file.seek(offset)
        blocksize = (
            min(count, constants.SENDFILE_FALLBACK_READBUFFER_SIZE)
            if count
            else constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        )
        buf = bytearray(blocksize)
        total = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total
                await send(view[:read])
                total += read
                if drain is not None:
                    await drain()
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    # -- over a transport ------------------------------------------------------------------

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file over a transport: os.sendfile on the raw socket when possible."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transport, file, offset, count):
        """Straight on the transport's socket, waiting on the transport's own writable
        edges (the fd stays registered to it), one loop turn per chunk."""
        core = getattr(transport, "_core", None)
        if core is None or not hasattr(core, "_wait_writable"):
            raise exceptions.SendfileNotAvailableError("not a native socket transport")
        # asyncio's native path goes through sock_sendfile, whose argument checks come
        # before anything is sent (a text file, count <= 0, offset < 0: ValueError).
        self._check_sendfile_params(transport.get_extra_info("socket"), file, offset, count)
        try:
            fileno = file.fileno()
            fsize = os.fstat(fileno).st_size
        except (AttributeError, io.UnsupportedOperation, OSError) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        end = offset + count if count else fsize
        if end <= offset:
            return 0
        resume = transport.is_reading()
        transport.pause_reading()
        await transport._make_empty_waiter()  # what write() buffered goes out first
        try:
            return await _send_chunks(
                core._sock_fd,
                fileno,
                offset,
                end,
                core._wait_writable,
                closed=lambda: core._is_closed() or transport.is_closing(),
                yield_each=True,
            )
        finally:
            transport._reset_empty_waiter()
            if resume:
                transport.resume_reading()

    async def _sendfile_fallback(self, transport, file, offset, count):
        async def send(block):
            if transport.is_closing():
                raise ConnectionError("Connection closed by peer")
            transport.write(bytes(block))

        async def drain():
            # wait for the transport's buffer to drain before reading more
            if transport.get_write_buffer_size() and hasattr(transport, "_make_empty_waiter"):
                try:
                    await transport._make_empty_waiter()
                finally:
                    transport._reset_empty_waiter()

        return await self._sendfile_fallback_blocks(file, offset, count, send, drain)

    # -- over a socket ---------------------------------------------------------------------

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send a file over a socket: zero-copy os.sendfile where possible, else read and
        send in chunks (fallback=True)."""
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        check_ssl_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        if not hasattr(os, "sendfile"):
            raise exceptions.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")  # noqa: B904  (asyncio's raise: the OSError stays its context)
        end = offset + count if count else fsize
        if end <= offset:
            return 0  # an empty file, or nothing after offset

        async def wait_writable():
            fut = self.create_future()
            self._wait_writable(sock, fut, lambda f, s: f.done() or f.set_result(None))
            await fut

        return await _send_chunks(sock.fileno(), fileno, offset, end, wait_writable)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        return await self._sendfile_fallback_blocks(
            file, offset, count, lambda block: self.sock_sendall(sock, block)
        )
