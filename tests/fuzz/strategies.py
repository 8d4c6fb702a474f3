"""Hypothesis strategies for the differential tester's programs (scenario.py)."""

from hypothesis import strategies as st

from netutil import asyncio_loses_eof_after_empty_writelines

# Where the running asyncio has that defect, writelines() gets no empty buffers here
# (ferroloop is still tried on them on the other Pythons, and in test_write_flush.py).
_MIN_ITEM = 1 if asyncio_loses_eof_after_empty_writelines() else 0

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
