"""Helpers shared by the networking tests."""

import asyncio
import gc
import os
import resource


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
