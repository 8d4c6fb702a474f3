"""A ferroloop loop with the x-ray's live monitor on and nobody connected (its cost row):
`--loops ferroloop:new_event_loop,benchmarks.xray_monitored:new_event_loop`."""

import os
import tempfile

import ferroloop
from ferroloop import xray


def new_event_loop():
    # One path for every run: benchmark servers are killed, not shut down, so their
    # sockets stay behind, and serve() replaces a stale one (a live one: a per-PID path).
    path = os.path.join(tempfile.gettempdir(), "ferroloop-bench-monitor.sock")
    try:
        xray.serve(path)
    except FileExistsError:
        xray.serve(os.path.join(tempfile.gettempdir(), f"ferroloop-bench-monitor-{os.getpid()}.sock"))
    return ferroloop.new_event_loop()  # made after serve(): the monitor watches it
