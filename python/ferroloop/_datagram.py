"""Datagram endpoints: create_datagram_endpoint (UDP, Unix datagrams), once per endpoint;
each datagram then goes through the native transport (src/transports/datagram.rs).
"""

import socket
import sys
from asyncio.log import logger

from . import _unix_paths as unix_paths
from ._sockets import set_reuseport
from ._transports import DatagramTransport


class DatagramMixin:
    """The loop's datagram endpoints.

    Needs from the loop: sock_connect, _ensure_resolved (SocketsMixin), create_future,
    get_debug (CoreLoop)."""

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    async def create_datagram_endpoint(
        self,
        protocol_factory,
        local_addr=None,
        remote_addr=None,
        *,
        family=0,
        proto=0,
        flags=0,
        reuse_port=None,
        allow_broadcast=None,
        sock=None,
    ):
        """A UDP (or Unix datagram) endpoint; returns (transport, protocol). No
        reuse_address=: asyncio 3.11+ has no such parameter (a TypeError, as there)."""
        if sock is not None:
            if sock.type == socket.SOCK_STREAM:
                kind = "UDP Socket" if sys.version_info < (3, 13) else "datagram socket"  # asyncio's wording
                raise ValueError(f"A {kind} was expected, got {sock!r}")
            opts = dict(
                local_addr=local_addr,
                remote_addr=remote_addr,
                family=family,
                proto=proto,
                flags=flags,
                reuse_port=reuse_port,
                allow_broadcast=allow_broadcast,
            )
            if any(opts.values()):
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used when sock is specified. ({problems})"
                )
            sock.setblocking(False)
            r_addr = None
        else:
            if not (local_addr or remote_addr):
                if family == 0:
                    raise ValueError("unexpected address family")
                addr_pairs = (((family, proto), (None, None)),)
            elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
                for addr in (local_addr, remote_addr):
                    if addr is not None and not isinstance(addr, str):
                        raise TypeError("string is expected")
                if local_addr:
                    unix_paths.remove_stale(local_addr)
                addr_pairs = (((family, proto), (local_addr, remote_addr)),)
            else:
                by_key = {}  # (family, proto) -> [local, remote], in resolution order
                for idx, addr in ((0, local_addr), (1, remote_addr)):
                    if addr is None:
                        continue
                    if not (isinstance(addr, tuple) and len(addr) == 2):
                        raise TypeError("2-tuple is expected")
                    infos = await self._ensure_resolved(
                        addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags
                    )
                    if not infos:
                        raise OSError("getaddrinfo() returned empty list")
                    for fam, _, pro, _, address in infos:
                        by_key.setdefault((fam, pro), [None, None])[idx] = address
                addr_pairs = [
                    (key, pair)
                    for key, pair in by_key.items()
                    if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
                ]
                if not addr_pairs:
                    raise ValueError("can not get address information")
            errors = []
            for (fam, pro), (local_address, remote_address) in addr_pairs:
                sock = None
                r_addr = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        set_reuseport(sock)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                raise errors[0]
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self.get_debug():
            logger.debug(
                "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                local_addr,
                remote_addr,
                transport,
                protocol,
            )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol
