"""Hypothesis strategies for the differential tester's programs (scenario.py)."""

import asyncio
import socket

from hypothesis import strategies as st


def _asyncio_loses_eof_after_empty_writelines():
    """CPython 3.13.0's asyncio: writelines() of only empty buffers leaves an empty
    memoryview in the buffer for ever, so a later write_eof() never takes effect. Where the
    running Python has that bug, programs give writelines() no empty buffers (ferroloop is
    still tried on them on the other Pythons)."""
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


_MIN_ITEM = 1 if _asyncio_loses_eof_after_empty_writelines() else 0

sizes = st.one_of(st.integers(0, 64), st.integers(0, 70_000), st.sampled_from([1 << 20, 3 << 20]))

op = st.one_of(
    st.tuples(st.just("write"), sizes),
    st.tuples(st.just("writelines"), st.lists(st.integers(_MIN_ITEM, 5000), max_size=300)),
    st.tuples(st.just("write_eof")),
    st.tuples(st.just("limits"), st.integers(0, 1 << 20)),
    st.tuples(st.just("pause_peer")),
    st.tuples(st.just("resume_peer")),
    st.tuples(st.just("sleep"), st.integers(0, 5)),
    st.tuples(st.just("timer"), st.integers(0, 20), st.booleans(), st.integers(0, 999)),
    st.tuples(st.just("threadsafe"), st.integers(1, 50), st.integers(0, 999)),
    st.tuples(st.just("close")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("peer_close")),
    st.tuples(st.just("peer_abort")),
    st.tuples(st.just("server_close")),
)

programs = st.fixed_dictionaries({"kind": st.sampled_from(["tcp", "unix"]), "ops": st.lists(op, max_size=12)})
