"""Servers: create_server, create_unix_server (3.13+: cleanup_socket), and accepting
their connections (asyncio's _start_serving / _accept_connection / _stop_serving). Once
per listening socket and per accepted connection; the `Server` object is `_server`'s.
"""

import collections.abc
import errno
import itertools
import os
import socket
import sys
from asyncio import constants, tasks, trsock
from asyncio.log import logger

from . import _unix_paths as unix_paths
from ._server import Server
from ._sockets import bind_error_text, check_ssl_socket, set_reuseport
from ._tls import check_ssl_args

_HAS_IPV6 = hasattr(socket, "AF_INET6")
_ACCEPT_RETRY_DELAY = 1  # asyncio.constants.ACCEPT_RETRY_DELAY


class ServeMixin:
    """The loop's listening sockets and what they accept.

    Needs from the loop: _ensure_resolved (SocketsMixin), _make_socket_transport
    (ConnectMixin), _make_ssl_transport (TlsMixin), call_exception_handler (Loop),
    create_future, _add_reader, _remove_reader, call_later, create_task, get_debug (CoreLoop)."""

    async def _create_server_getaddrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved((host, port), family=family, type=socket.SOCK_STREAM, flags=flags)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    async def create_server(
        self,
        protocol_factory,
        host=None,
        port=None,
        *,
        family=socket.AF_UNSPEC,
        flags=socket.AI_PASSIVE,
        sock=None,
        backlog=100,
        ssl=None,
        reuse_address=None,
        reuse_port=None,
        keep_alive=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
    ):
        """A TCP server on host(s):port (or sock); returns a Server."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        check_ssl_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            check_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            infos = await tasks.gather(
                *[self._create_server_getaddrinfo(h, port, family, flags) for h in hosts]
            )
            infos = set(itertools.chain.from_iterable(infos))
            sockets = []
            completed = False
            try:
                for af, socktype, proto, _, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        # an address family this host does not have
                        if self.get_debug():
                            logger.warning(
                                "create_server() failed to create socket.socket(%r, %r, %r)",
                                af,
                                socktype,
                                proto,
                                exc_info=True,
                            )
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        # one socket per family, not a dual-stack one
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = "error while attempting to bind on address %r: %s" % (sa, bind_error_text(err))
                        if err.errno == errno.EADDRNOTAVAIL and sys.version_info >= (3, 13):
                            sockets.pop()
                            sock.close()
                            if self.get_debug():
                                logger.warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None
                if not sockets:
                    raise OSError("could not bind on any address out of %r" % ([info[4] for info in infos],))
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        for s in sockets:
            s.setblocking(False)
        server = Server(
            self, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)  # let the listening sockets register
        if self.get_debug():
            logger.info("%r is serving", server)
        return server

    if sys.version_info >= (3, 13):

        async def create_unix_server(
            self,
            protocol_factory,
            path=None,
            *,
            sock=None,
            backlog=100,
            ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=True,
            cleanup_socket=True,
        ):
            """A server on a Unix socket at path (or sock); returns a Server. Closing it
            removes the socket file (cleanup_socket=True), as 3.13's asyncio does."""
            return await self._create_unix_server(
                protocol_factory,
                path,
                sock=sock,
                backlog=backlog,
                ssl=ssl,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                start_serving=start_serving,
                cleanup_socket=cleanup_socket,
            )

    else:

        async def create_unix_server(
            self,
            protocol_factory,
            path=None,
            *,
            sock=None,
            backlog=100,
            ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=True,
        ):
            """A server on a Unix socket at path (or sock); returns a Server. Before 3.13
            asyncio leaves the socket file behind on close, and has no cleanup_socket=."""
            return await self._create_unix_server(
                protocol_factory,
                path,
                sock=sock,
                backlog=backlog,
                ssl=ssl,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                start_serving=start_serving,
                cleanup_socket=False,
            )

    async def _create_unix_server(
        self,
        protocol_factory,
        path,
        *,
        sock,
        backlog,
        ssl,
        ssl_handshake_timeout,
        ssl_shutdown_timeout,
        start_serving,
        cleanup_socket,
    ):
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        check_ssl_args(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix_paths.remove_stale(path)  # a socket file left by an earlier run
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket:
            bound = unix_paths.bound_file(sock)
            if bound is not None:
                self._unix_server_sockets[sock] = bound
        sock.setblocking(False)
        server = Server(
            self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    @property
    def _unix_server_sockets(self):
        """Listening Unix sockets whose file goes when they stop: sock -> (path, inode)
        (asyncio's name; made on first use, so the loop's __init__ need not know)."""
        try:
            return self.__dict__["_ferro_unix_server_sockets"]
        except KeyError:
            return self.__dict__.setdefault("_ferro_unix_server_sockets", {})

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        self._add_reader(
            sock.fileno(),
            self._accept_connection,
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )

    def _stop_serving(self, sock):
        self._remove_reader(sock.fileno())
        bound = self._unix_server_sockets.pop(sock, None)
        sock.close()
        if bound is not None:
            unix_paths.remove_bound_file(*bound)

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # Up to `backlog` connections per readiness, as asyncio does.
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of fds or memory: stop accepting for a while rather than spin.
                    self.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": exc,
                            "socket": trsock.TransportSocket(sock),
                        }
                    )
                    self._remove_reader(sock.fileno())
                    self.call_later(
                        _ACCEPT_RETRY_DELAY,
                        self._start_serving,
                        protocol_factory,
                        sock,
                        sslcontext,
                        server,
                        backlog,
                        ssl_handshake_timeout,
                        ssl_shutdown_timeout,
                    )
                    return
                raise  # the loop's exception handler logs it
            extra = {"peername": addr}
            if sslcontext:
                self.create_task(
                    self._accept_tls(
                        protocol_factory,
                        conn,
                        extra,
                        sslcontext,
                        server,
                        ssl_handshake_timeout,
                        ssl_shutdown_timeout,
                    )
                )
            else:
                self._accept_plain(protocol_factory, conn, extra, server)

    def _accept_plain(self, protocol_factory, conn, extra, server):
        # No task per connection: the transport is made at once; connection_made follows
        # on the next iteration as in asyncio.
        try:
            protocol = protocol_factory()
            self._make_socket_transport(conn, protocol, extra=extra, server=server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            if self.get_debug() or not isinstance(exc, OSError):
                self.call_exception_handler(
                    {
                        "message": "Error on transport creation for incoming connection",
                        "exception": exc,
                    }
                )

    async def _accept_tls(
        self, protocol_factory, conn, extra, sslcontext, server, ssl_handshake_timeout, ssl_shutdown_timeout
    ):
        protocol = None
        transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_ssl_transport(
                conn,
                protocol,
                sslcontext,
                waiter=waiter,
                server_side=True,
                extra=extra,
                server=server,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self.get_debug():
                context = {"message": "Error on transport creation for incoming connection", "exception": exc}
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)
