"""A ferroloop loop with the x-ray's live monitor on and nobody connected (its cost row):
`--loops ferroloop:new_event_loop,benchmarks.xray_monitored:new_event_loop`."""

import os
import tempfile

import ferroloop
from ferroloop import xray


def new_event_loop():
    # one socket per benchmark process, removed when it exits
    xray.serve(os.path.join(tempfile.gettempdir(), f"ferroloop-bench-{os.getpid()}.sock"))
    return ferroloop.new_event_loop()  # made after serve(): the monitor watches it
