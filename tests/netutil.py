"""Helpers shared by the networking tests."""

import asyncio
import gc
import os
import socket


def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Recorder(asyncio.Protocol):
    """A protocol that records every callback, to check order and counts."""

    def __init__(self):
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.lost = None
        self.made = None
        self.lost_count = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.made is not None and not self.made.done():
            self.made.set_result(None)

    def data_received(self, data):
        self.data += data
        self.events.append("data")

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.lost_count += 1
        self.events.append(("lost", type(exc).__name__ if exc else None))
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(exc)


def make_recorder(loop):
    p = Recorder()
    p.made = loop.create_future()
    p.lost = loop.create_future()
    return p


def asyncio_loses_eof_after_empty_writelines():
    """Whether the running Python's asyncio (3.12.1 and 3.13.0 here) keeps an empty
    memoryview buffered for ever after writelines() of only empty buffers, so that a later
    write_eof() never takes effect (found by the differential tester)."""
    loop = asyncio.new_event_loop()
    a, b = socket.socketpair()
    try:

        async def probe():
            tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            tr.writelines([b""])
            tr.write_eof()
            await asyncio.sleep(0)
            b.setblocking(False)
            try:
                return b.recv(1) != b""
            except BlockingIOError:
                return True
            finally:
                tr.abort()

        return loop.run_until_complete(probe())
    finally:
        loop.close()
        b.close()
