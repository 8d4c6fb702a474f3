"""loop.getaddrinfo answers what socket.getaddrinfo answers (issue 11 finding 5): its
numeric fast path answers only when it is certain, and then exactly as the real call."""

import ipaddress
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferroloop._sockets import numeric_getaddrinfo


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the type and args a program would see
        return ("raised", type(exc), exc.args)


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n))
ipv6_text = ipv6.flatmap(lambda a: st.sampled_from([a.compressed, a.exploded, a.exploded.upper()]))
odd_hosts = st.sampled_from(
    [
        "127.1",
        "01.2.3.4",
        "1.2.3.4 ",
        " 1.2.3.4",
        "0x7f.0.0.1",
        "::1%lo",
        "fe80::1%1",
        "",
        "localhost",
        "::ffff:1.2.3.4",
        "::FFFF:1.2.3.4",
        "1.2.3",
        "256.1.1.1",
        "::",
        "0.0.0.0",
        "١٢٧.0.0.1",
    ]
)
hosts = st.one_of(ipv4, ipv6_text, odd_hosts, ipv4.map(str.encode), st.none())
ports = st.one_of(
    st.integers(-70000, 140000),
    st.integers(0, 65535),
    st.text("0123456789+- ", max_size=7),
    st.sampled_from(
        ["http", "https", "80", "080", "65535", "65536", "٨٠", b"80", b"http", b"", "", None, 1.5, True]
    ),
)
families = st.sampled_from([socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX])
types = st.sampled_from([0, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW])
protos = st.sampled_from([0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP])
flags = st.sets(
    st.sampled_from([socket.AI_PASSIVE, socket.AI_NUMERICHOST, socket.AI_NUMERICSERV, socket.AI_CANONNAME])
).map(sum)


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(hosts, ports, families, types, protos, flags)
def test_fast_path_answers_only_what_getaddrinfo_answers(host, port, family, type_, proto, flag):
    fast = numeric_getaddrinfo(host, port, family, type_, proto, flag)
    if fast is not None:
        assert ("ok", fast) == outcome(socket.getaddrinfo, host, port, family, type_, proto, flag)


CASES = [
    ("127.0.0.1", 70000, 0, socket.SOCK_STREAM, 0, 0),  # the C library wraps it: 4464
    ("127.0.0.1", -1, 0, socket.SOCK_STREAM, 0, 0),  # gaierror
    ("127.0.0.1", 65536, 0, socket.SOCK_DGRAM, 0, 0),
    ("127.0.0.1", "70000", 0, socket.SOCK_STREAM, 0, 0),
    ("127.0.0.1", " 80", 0, socket.SOCK_STREAM, 0, 0),
    ("127.0.0.1", "http", 0, socket.SOCK_STREAM, 0, 0),
    ("127.0.0.1", "http", 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICSERV),
    ("127.0.0.1", True, 0, socket.SOCK_STREAM, 0, 0),
    ("127.0.0.1", 1.5, 0, socket.SOCK_STREAM, 0, 0),
    ("127.0.0.1", 80, 0, socket.SOCK_DGRAM, socket.IPPROTO_TCP, 0),
    ("127.0.0.1", 80, socket.AF_INET6, socket.SOCK_STREAM, 0, 0),
    ("0:0::1", "443", 0, socket.SOCK_STREAM, 0, 0),
    ("::1", 80, 0, 0, 0, 0),
    ("127.0.0.1", 80, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME),
    (b"127.0.0.1", b"80", socket.AF_INET, socket.SOCK_STREAM, 0, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[repr(c[:2]) for c in CASES])
def test_loop_getaddrinfo_is_socket_getaddrinfo(loop, case):
    host, port, family, type_, proto, flag = case

    async def call():
        return await loop.getaddrinfo(host, port, family=family, type=type_, proto=proto, flags=flag)

    got = outcome(lambda: loop.run_until_complete(call()))
    assert got == outcome(socket.getaddrinfo, host, port, family, type_, proto, flag)
