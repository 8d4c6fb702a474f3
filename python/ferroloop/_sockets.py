"""Raw sockets on the loop (sock_recv, sock_sendall, sock_connect, ...) and name
resolution. Each operation first tries the non-blocking call at once; only when the
socket is not ready does it wait for readiness through the native fd watchers. Also the
socket helpers the connect, serve and datagram methods share (socket options, bind
errors). sock_sendfile is in `_sendfile`.
"""

import errno
import functools
import socket
import sys

_HAS_IPV6 = hasattr(socket, "AF_INET6")
# Flags a numeric-host lookup answers exactly like getaddrinfo() would.
_NUMERIC_SAFE_FLAGS = socket.AI_PASSIVE | socket.AI_NUMERICHOST | getattr(socket, "AI_NUMERICSERV", 0)
_PROTO_OF_TYPE = {socket.SOCK_STREAM: socket.IPPROTO_TCP, socket.SOCK_DGRAM: socket.IPPROTO_UDP}
_DIGITS = frozenset("0123456789")


def check_ssl_socket(sock):
    import ssl

    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:  # asyncio's raise below: the OSError stays its context
        raise ValueError(  # noqa: B904
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        )


def bind_error_text(err):
    """How asyncio words a bind error after "error while attempting to bind on address
    ...: ": 3.13+ lowercases str(err) ("[errno 98] address already in use"), 3.11 and 3.12
    the bare strerror."""
    if sys.version_info >= (3, 13) or err.strerror is None:
        return str(err).lower()
    return err.strerror.lower()


def numeric_addrinfo(host, port, family, type, proto, flowinfo=0, scopeid=0):
    """The single getaddrinfo() entry for a host that is already an IP address, or None
    if a real lookup is needed (a name, a service port, an unusual type): asyncio's
    `_ipaddr_info`, which create_connection & co. use (loop.getaddrinfo does not)."""
    if host is None or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if port is None or port in (b"", ""):
        port = 0
    else:
        try:
            port = int(port)  # a service name such as "http" needs the resolver
        except (TypeError, ValueError):
            return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str) or "%" in host:  # zone indexes need the resolver
        return None
    families = [socket.AF_INET, socket.AF_INET6] if family == socket.AF_UNSPEC else [family]
    for af in families:
        if af == socket.AF_INET6 and not _HAS_IPV6:
            continue
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if af == socket.AF_INET6:
            return af, type, proto, "", (host, port, flowinfo, scopeid)
        return af, type, proto, "", (host, port)
    return None


def _plain_port(port):
    """The port number when socket.getaddrinfo would take `port` as exactly that number,
    else None (a service name, a sign, spaces, an out-of-range number that the C library
    would wrap, a bool or float that Python refuses: the real call answers those)."""
    if port is None:
        return 0
    if type(port) is int:
        return port if 0 <= port <= 65535 else None
    if type(port) is bytes:
        try:
            port = port.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(port) is str and 0 < len(port) <= 5 and _DIGITS.issuperset(port):
        value = int(port)
        return value if value <= 65535 else None
    return None


def numeric_getaddrinfo(host, port, family, type, proto, flags):
    """What socket.getaddrinfo() answers when `host` is an IP address in its plain text
    form, computed without the resolver — or None whenever that is not certain, and the
    real call must answer (loop.getaddrinfo is socket.getaddrinfo to its caller)."""
    expected = _PROTO_OF_TYPE.get(type)
    if expected is None or proto not in (0, expected) or flags & ~_NUMERIC_SAFE_FLAGS:
        return None
    if family == socket.AF_UNSPEC:
        families = (socket.AF_INET, socket.AF_INET6) if _HAS_IPV6 else (socket.AF_INET,)
    elif family == socket.AF_INET or (family == socket.AF_INET6 and _HAS_IPV6):
        families = (family,)
    else:
        return None
    port = _plain_port(port)
    if port is None:
        return None
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(host, str) or not host.isascii() or "%" in host:
        return None
    for af in families:
        try:
            packed = socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        addr = socket.inet_ntop(af, packed)  # getaddrinfo() answers the canonical form
        sa = (addr, port, 0, 0) if af == socket.AF_INET6 else (addr, port)
        return [(socket.AddressFamily(af), socket.SocketKind(type), expected, "", sa)]
    return None


class SocketsMixin:
    """The sock_* methods and name resolution.

    Needs from the loop: run_in_executor (Loop), create_future, _add_reader, _add_writer,
    remove_reader, remove_writer, _transport_for_fd, call_later, get_debug (CoreLoop)."""

    # -- name resolution -----------------------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo off the loop thread; IP addresses are answered at once."""
        info = numeric_getaddrinfo(host, port, family, type, proto, flags)
        if info is not None:
            return info
        return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(
        self, address, *, family=0, type=socket.SOCK_STREAM, proto=0, flags=0, loop=None
    ):
        host, port = address[:2]
        info = numeric_addrinfo(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await self.getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)

    # -- helpers -------------------------------------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transport_for_fd(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport._facade_repr()}")

    def _check_nonblocking(self, sock):
        check_ssl_socket(sock)
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _sock_read_done(self, fd, fut, handle=None):
        if handle is None or not handle.cancelled():
            self.remove_reader(fd)

    def _sock_write_done(self, fd, fut, handle=None):
        if handle is None or not handle.cancelled():
            self.remove_writer(fd)

    def _wait_readable(self, sock, fut, retry, *args):
        """Retry `retry(fut, sock, *args)` each time `sock` is readable, until fut is done."""
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, retry, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._sock_read_done, fd, handle=handle))

    def _wait_writable(self, sock, fut, retry, *args):
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, retry, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._sock_write_done, fd, handle=handle))

    @staticmethod
    def _complete(fut, op, *args):
        """Run one non-blocking socket call for a pending future; False if not ready."""
        if fut.done():
            return True
        try:
            result = op(*args)
        except (BlockingIOError, InterruptedError):
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        finally:
            fut = None  # as in _sock_connect_done
        return True

    # -- receiving -----------------------------------------------------------------------

    async def _sock_read(self, sock, op, *args):
        self._check_nonblocking(sock)
        try:
            return op(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._wait_readable(sock, fut, lambda f, s, *a: self._complete(f, op, *a), *args)
        return await fut

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket."""
        return await self._sock_read(sock, sock.recv, n)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf; returns the number of bytes received."""
        return await self._sock_read(sock, sock.recv_into, buf)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: (data, address)."""
        return await self._sock_read(sock, sock.recvfrom, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (nbytes, address)."""
        if not nbytes:
            nbytes = len(buf)
        return await self._sock_read(sock, sock.recvfrom_into, buf, nbytes)

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address), conn non-blocking."""
        self._check_nonblocking(sock)

        def accept():
            conn, address = sock.accept()
            conn.setblocking(False)
            return conn, address

        try:
            return accept()
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._wait_readable(sock, fut, lambda f, s: self._complete(f, accept))
        return await fut

    # -- sending -------------------------------------------------------------------------

    async def sock_sendall(self, sock, data):
        """Send all of data (the socket must be connected)."""
        self._check_nonblocking(sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        view = memoryview(data).cast("B")
        if n == len(view):
            return
        fut = self.create_future()
        pos = [n]

        def more(f, s):
            if f.done():
                return
            try:
                sent = s.send(view[pos[0] :])
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                f.set_exception(exc)
                return
            pos[0] += sent
            if pos[0] == len(view):
                f.set_result(None)

        self._wait_writable(sock, fut, more)
        return await fut

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address; returns the number of bytes sent."""
        self._check_nonblocking(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._wait_writable(sock, fut, lambda f, s: self._complete(f, s.sendto, data, 0, address))
        return await fut

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket (resolving a host name first if needed)."""
        self._check_nonblocking(sock)
        if sock.family == socket.AF_INET or (_HAS_IPV6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto
            )
            address = resolved[0][4]
        fut = self.create_future()
        try:
            sock.connect(address)
        except BlockingIOError as exc:
            if exc.errno == errno.EAGAIN and sock.family == getattr(socket, "AF_UNIX", None):
                # A Unix listener with a full backlog: nothing is in progress (asyncio
                # waits for writability here and hands back an unconnected socket).
                self._retry_unix_connect(fut, sock, address, 0.001)
            else:
                # In progress (EINPROGRESS): writable means connected or failed.
                self._wait_writable(sock, fut, self._sock_connect_done, address)
        except InterruptedError:
            self._wait_writable(sock, fut, self._sock_connect_done, address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut
        finally:
            fut = None  # break the cycle through the exception's traceback

    def _retry_unix_connect(self, fut, sock, address, delay):
        self.call_later(delay, self._unix_connect_attempt, fut, sock, address, delay)

    def _unix_connect_attempt(self, fut, sock, address, delay):
        if fut.done():
            return
        try:
            sock.connect(address)
        except BlockingIOError as exc:
            if exc.errno == errno.EAGAIN:
                self._retry_unix_connect(fut, sock, address, min(delay * 2, 0.1))
                return
            fut.set_exception(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            fut = None  # as in _sock_connect_done

    @staticmethod
    def _sock_connect_done(fut, sock, address):
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            fut = None  # the exception's traceback holds this frame: no cycle through fut
