"""Transport facades: the objects protocols see. Each is a real `asyncio.Transport` /
`asyncio.DatagramTransport` (libraries check with isinstance) wrapping a native engine
(src/transports/). Hot methods are the engine's own bound methods, set on the instance,
so `transport.write(data)` costs no Python frame. Also the once-per-error helpers the
engines call.
"""

import socket
import warnings
from asyncio import constants, transports, trsock
from asyncio.log import logger
from asyncio.protocols import BufferedProtocol  # noqa: F401  (the engines look it up here)

from ._ferroloop import DatagramTransport as _DatagramEngine
from ._ferroloop import ReadPipeTransport as _ReadPipeEngine
from ._ferroloop import SocketTransport as _SocketEngine
from ._ferroloop import WritePipeTransport as _WritePipeEngine

_STREAM_FAST = (
    "write",
    "writelines",
    "is_closing",
    "pause_reading",
    "resume_reading",
    "is_reading",
    "get_write_buffer_size",
    "get_write_buffer_limits",
    "set_write_buffer_limits",
    "write_eof",
    "can_write_eof",
    "close",
    "abort",
    "get_protocol",
    "set_protocol",
)
_DATAGRAM_FAST = (
    "sendto",
    "is_closing",
    "get_write_buffer_size",
    "get_write_buffer_limits",
    "set_write_buffer_limits",
    "close",
    "abort",
    "get_protocol",
    "set_protocol",
)


def _set_nodelay(sock):
    # asyncio disables Nagle on TCP transports: small writes go out at once.
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto in (0, socket.IPPROTO_TCP)
    ):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _base_extra(sock, extra):
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None


class _FacadeMixin:
    def __repr__(self):
        core = self._core
        info = [type(self).__name__]
        closed = core._is_closed()
        if closed:
            info.append("closed")
        elif core.is_closing():
            info.append("closing")
        info.append(f"fd={core._sock_fd}")
        info.extend(self._repr_tail(core, closed))
        return "<{}>".format(" ".join(info))

    def _repr_tail(self, core, closed):
        # asyncio's socket transports: read=polling|idle write=<polling|idle, bufsize=N>
        if closed or not hasattr(core, "_repr_state"):
            return []
        reading, writing, size = core._repr_state()
        return [
            "read=polling" if reading else "read=idle",
            f"write=<{'polling' if writing else 'idle'}, bufsize={size}>",
        ]

    def __del__(self, _warn=warnings.warn):
        core = self.__dict__.get("_core")
        if core is not None and not core._is_closed():
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock = self._sock
            if sock is not None:
                sock.close()

    def _force_close(self, exc):
        self._core._force_close(exc)


class SocketTransport(_FacadeMixin, transports.Transport):
    """A TCP or Unix stream socket transport (asyncio's _SelectorSocketTransport)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        super().__init__(extra)
        _base_extra(sock, self._extra)
        _set_nodelay(sock)
        self._loop = loop
        self._sock = sock
        self._server = server
        core = _SocketEngine.open(loop, self, sock, protocol, waiter, server)
        self._core = core
        for name in _STREAM_FAST:
            setattr(self, name, getattr(core, name))
        if server is not None:
            server._attach(self)

    @property
    def _sock_fd(self):
        return self._core._sock_fd

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()


def _pipe_mode(pipe):
    import os
    import stat

    mode = os.fstat(pipe.fileno()).st_mode
    return stat.S_ISFIFO(mode), stat.S_ISSOCK(mode), stat.S_ISCHR(mode)


class _PipeFacadeMixin(_FacadeMixin):
    def _repr_tail(self, core, closed):
        # asyncio's pipe repr: <... fd=N polling|idle>, "open" once its loop is closed
        if closed:
            return ["closed"]
        if self._loop.is_closed():
            return ["open"]
        if isinstance(self, ReadPipeTransport):
            return ["polling" if core.is_reading() else "idle"]
        size = core.get_write_buffer_size()
        return ["polling" if size else "idle", f"bufsize={size}"]


class ReadPipeTransport(_PipeFacadeMixin, transports.ReadTransport):
    """The read end of a pipe (asyncio's _UnixReadPipeTransport)."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        import os

        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._sock = pipe
        fifo, sock, char = _pipe_mode(pipe)
        if not (fifo or sock or char):
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(pipe.fileno(), False)
        core = _ReadPipeEngine.open(loop, self, pipe, protocol, waiter)
        self._core = core
        for name in (
            "is_closing",
            "pause_reading",
            "resume_reading",
            "is_reading",
            "close",
            "get_protocol",
            "set_protocol",
        ):
            setattr(self, name, getattr(core, name))

    @property
    def _fileno(self):
        return self._core._sock_fd

    @property
    def _pipe(self):
        return None if self._core._is_closed() else self._sock


# A Transport, not only a WriteTransport: asyncio's write pipe is one too (through
# _FlowControlMixin), so pause_reading & co. raise NotImplementedError as there.
class WritePipeTransport(_PipeFacadeMixin, transports.Transport):
    """The write end of a pipe (asyncio's _UnixWritePipeTransport), with flow control."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        import os
        import sys

        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._sock = pipe
        fifo, sock, char = _pipe_mode(pipe)
        if not (fifo or sock or char):
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(pipe.fileno(), False)
        # Readability of a FIFO's or socket's write end means the reader went away.
        watch_close = sock or (fifo and not sys.platform.startswith("aix"))
        core = _WritePipeEngine.open(loop, self, pipe, protocol, waiter, watch_close)
        self._core = core
        for name in (
            "write",
            "writelines",
            "is_closing",
            "get_write_buffer_size",
            "get_write_buffer_limits",
            "set_write_buffer_limits",
            "write_eof",
            "can_write_eof",
            "abort",
            "get_protocol",
            "set_protocol",
        ):
            setattr(self, name, getattr(core, name))

    def close(self):
        # write_eof is all a write pipe needs to close
        self._core.write_eof()

    @property
    def _fileno(self):
        return self._core._sock_fd

    @property
    def _pipe(self):
        return None if self._core._is_closed() else self._sock


class DatagramTransport(_FacadeMixin, transports.DatagramTransport, transports.Transport):
    """A UDP or Unix datagram transport (asyncio's _SelectorDatagramTransport)."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        super().__init__(extra)
        _base_extra(sock, self._extra)
        self._loop = loop
        self._sock = sock
        self._address = address
        core = _DatagramEngine.open(
            loop, self, sock, protocol, address, waiter, bool(self._extra.get("peername"))
        )
        self._core = core
        for name in _DATAGRAM_FAST:
            setattr(self, name, getattr(core, name))

    @property
    def _sock_fd(self):
        return self._core._sock_fd


# -- helpers the native engines call (once per error / per event, never per packet) -----


def fatal_error(loop, transport, protocol, exc, message, quiet="oserror"):
    """asyncio's _fatal_error report: OSErrors (peer gone) only in debug logs, others to
    the exception handler. Read pipes are quiet only about EIO (a closed pty)."""
    import errno

    if isinstance(exc, OSError) and (quiet == "oserror" or exc.errno == errno.EIO):
        if loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
        return
    loop.call_exception_handler(
        {"message": message, "exception": exc, "transport": transport, "protocol": protocol}
    )


def flow_control_failed(loop, transport, protocol, exc, method):
    loop.call_exception_handler(
        {
            "message": f"protocol.{method}() failed",
            "exception": exc,
            "transport": transport,
            "protocol": protocol,
        }
    )


def datagram_callback_failed(loop, transport, exc):
    loop.call_exception_handler(
        {
            "message": f"Exception in callback {type(transport).__name__}._read_ready()",
            "exception": exc,
            "transport": transport,
        }
    )


def set_result_unless_done(fut, result):
    if not fut.done():
        fut.set_result(result)


def set_exception_unless_done(fut, exc):
    if not fut.done():
        fut.set_exception(exc)


def log_debug(msg, *args):
    logger.debug(msg, *args)


def log_info(msg, *args):
    logger.info(msg, *args)


def log_warning(msg, *args):
    logger.warning(msg, *args)
