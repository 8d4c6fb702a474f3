"""ferroloop with asyncio's own sslproto.SSLProtocol for TLS (what ferroloop did before
its native TLS layer): the "before" column of the TLS rows. `module:factory` for the
runner: `benchmarks.ferroloop_sslproto:new_event_loop`."""

import ferroloop
from ferroloop import _tls


def new_event_loop():
    _tls._NATIVE = False
    return ferroloop.new_event_loop()
