"""TLS: what runs once per connection. The records themselves go through the native
engine (src/tls/), which drives CPython's own `ssl` objects; this module checks the
arguments, picks the context, calls `wrap_bio`, makes the transport facade the app
protocol sees (`_make_ssl_transport`, `start_tls`), and falls back to asyncio's
`sslproto.SSLProtocol` where the engine cannot serve (see docs/architecture.md, "TLS").
"""

import os
import sys
import warnings
from asyncio import constants, exceptions, sslproto, transports
from asyncio.log import logger
from asyncio.protocols import BufferedProtocol

from ._ferroloop import TlsProtocol as _TlsEngine
from ._transports import SocketTransport

try:
    import ssl
except ImportError:  # pragma: no cover - CPython without OpenSSL
    ssl = None

# 3.12+: SSLProtocol._abort(exc) force-closes the transport below with exc (3.11: abort()).
ABORT_WITH_EXC = sys.version_info >= (3, 12)
TimeoutError = exceptions.TimeoutError

# FERROLOOP_TLS=asyncio keeps asyncio's SSLProtocol everywhere (for comparison/diagnosis).
_NATIVE = os.environ.get("FERROLOOP_TLS", "native") != "asyncio"

_FAST = (
    "write",
    "writelines",
    "is_closing",
    "abort",
    "pause_reading",
    "resume_reading",
    "is_reading",
    "set_write_buffer_limits",
    "get_write_buffer_limits",
    "get_write_buffer_size",
    "set_read_buffer_limits",
    "get_read_buffer_limits",
    "get_read_buffer_size",
    "get_protocol",
    "set_protocol",
    "get_extra_info",
)


class TlsProtocol(_TlsEngine, BufferedProtocol):
    """The engine as the transport below sees it: an asyncio BufferedProtocol."""

    def __repr__(self):
        return f"<ferroloop TlsProtocol state={self._state}>"


class TlsTransport(transports._FlowControlMixin, transports.Transport):
    """The transport the app protocol sees (asyncio's _SSLProtocolTransport); its methods
    are the engine's, bound on the instance."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(self, loop, ssl_protocol):
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        for name in _FAST:
            setattr(self, name, getattr(ssl_protocol, name))

    def __repr__(self):
        return f"<ferroloop TlsTransport {'closed' if self.is_closing() else 'open'}>"

    @property
    def _closed(self):
        return self._ssl_protocol is None or self._ssl_protocol.is_closing()

    def close(self):
        proto = self._ssl_protocol
        if proto is None:
            return
        if not proto.is_closing():
            proto.close()
            return
        # asyncio's second close() lets go of the protocol (and so of the context,
        # certificates, buffers) even before connection_lost has run.
        proto.close()
        self._ssl_protocol = None
        for name in _FAST:
            self.__dict__.pop(name, None)

    # -- what a let-go transport answers (its methods are no longer the engine's) --------

    def is_closing(self):
        return True

    def is_reading(self):
        return False

    def write(self, data):
        pass

    def writelines(self, list_of_data):
        pass

    def abort(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0

    def get_read_buffer_size(self):
        return 0

    def get_protocol(self):
        return None

    def get_extra_info(self, name, default=None):
        return default

    @property
    def _protocol_paused(self):
        # the sendfile fallback reads it
        return self._ssl_protocol is not None and self._ssl_protocol._app_writing_paused

    def write_eof(self):
        raise NotImplementedError

    def can_write_eof(self):
        return False

    def _force_close(self, exc):
        if self._ssl_protocol is not None:
            self._ssl_protocol._force_close(exc)

    def _test__append_write_backlog(self, data):
        self._ssl_protocol._test__append_write_backlog(data)

    def __del__(self, _warn=warnings.warn):
        proto = self.__dict__.get("_ssl_protocol")
        if proto is not None and not proto.is_closing():
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)


def native_serves(sslcontext):
    """Whether the native engine can drive this context: CPython's own SSLContext (or a
    subclass) whose wrap_bio and sslobject_class are ssl's."""
    if not _NATIVE or ssl is None:
        return False
    if sslcontext is None:
        return True
    if not isinstance(sslcontext, ssl.SSLContext):
        return False
    cls = type(sslcontext)
    return cls.wrap_bio is ssl.SSLContext.wrap_bio and sslcontext.sslobject_class is ssl.SSLObject


def new_protocol(
    loop,
    app_protocol,
    sslcontext,
    waiter,
    server_side=False,
    server_hostname=None,
    call_connection_made=True,
    ssl_handshake_timeout=None,
    ssl_shutdown_timeout=None,
):
    """asyncio's SSLProtocol(...) with its checks and messages; native where it can be."""
    if not native_serves(sslcontext):
        return sslproto.SSLProtocol(
            loop,
            app_protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            call_connection_made=call_connection_made,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    if ssl is None:  # pragma: no cover
        raise RuntimeError("stdlib ssl module not available")
    if ssl_handshake_timeout is None:
        ssl_handshake_timeout = constants.SSL_HANDSHAKE_TIMEOUT
    elif ssl_handshake_timeout <= 0:
        raise ValueError(f"ssl_handshake_timeout should be a positive number, got {ssl_handshake_timeout}")
    if ssl_shutdown_timeout is None:
        ssl_shutdown_timeout = constants.SSL_SHUTDOWN_TIMEOUT
    elif ssl_shutdown_timeout <= 0:
        raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {ssl_shutdown_timeout}")
    if not sslcontext:
        sslcontext = sslproto._create_transport_context(server_side, server_hostname)
    hostname = server_hostname if server_hostname and not server_side else None
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    sslobject = sslcontext.wrap_bio(incoming, outgoing, server_side=server_side, server_hostname=hostname)
    proto = TlsProtocol(
        loop,
        app_protocol,
        sslcontext,
        (sslobject, incoming, outgoing),
        waiter,
        call_connection_made,
        (ssl_handshake_timeout, ssl_shutdown_timeout),
    )
    proto._set_app_transport(TlsTransport(loop, proto))
    return proto


def check_ssl_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout):
    """The TLS timeouts make sense only with ssl= (asyncio's messages)."""
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


class TlsMixin:
    """The loop's TLS methods: a TLS transport over a new socket (`ssl=` of the
    connect and serve methods) or over an existing transport (`start_tls`).

    Needs from the loop: create_future, call_soon (CoreLoop)."""

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        call_connection_made=True,
    ):
        ssl_protocol = new_protocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=call_connection_made,
        )
        SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def start_tls(
        self,
        transport,
        protocol,
        sslcontext,
        *,
        server_side=False,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Upgrade an existing connection to TLS; returns the new (TLS) transport."""
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = new_protocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Paused until connection_made runs, so no data reaches the TLS layer before it.
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport


# -- helpers the engine calls (once per error / per event, never per record) -------------


def report_fatal(loop, transport, protocol, exc, message):
    """asyncio's SSLProtocol._fatal_error report (the transport was force-closed)."""
    if isinstance(exc, OSError):
        if loop.get_debug():
            logger.debug("%r: %s", protocol, message, exc_info=True)
    elif not isinstance(exc, exceptions.CancelledError):
        loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": transport,
                "protocol": protocol,
            }
        )


def log_debug(msg, *args):
    logger.debug(msg, *args)


def log_warning(msg, *args):
    logger.warning(msg, *args)
