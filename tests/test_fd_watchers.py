"""add_reader / add_writer: level-triggered callbacks on fds and socket objects."""

import os
import socket

import pytest

from netutil import open_fds


def test_reader_fires_while_data_remains(loop):
    r, w = socket.socketpair()
    r.setblocking(False)
    got = []

    def on_read():
        # read one byte per callback: level-triggered means we are called again
        got.append(r.recv(1))
        if len(got) == 5:
            loop.remove_reader(r)
            loop.stop()

    loop.add_reader(r, on_read)
    w.send(b"abcde")
    loop.run_forever()
    assert got == [b"a", b"b", b"c", b"d", b"e"]
    r.close(), w.close()


def test_reader_with_int_fd_and_args(loop):
    rfd, wfd = os.pipe()
    got = []

    def on_read(tag):
        got.append((tag, os.read(rfd, 100)))
        loop.stop()

    loop.add_reader(rfd, on_read, "tag")
    os.write(wfd, b"hello")
    loop.run_forever()
    assert got == [("tag", b"hello")]
    assert loop.remove_reader(rfd) is True
    assert loop.remove_reader(rfd) is False
    os.close(rfd), os.close(wfd)


def test_writer_fires_when_writable(loop):
    a, b = socket.socketpair()
    calls = []

    def on_write():
        calls.append(a.send(b"x"))
        loop.remove_writer(a)
        loop.stop()

    loop.add_writer(a, on_write)
    loop.run_forever()
    assert calls == [1]
    assert b.recv(10) == b"x"
    assert loop.remove_writer(a) is False
    a.close(), b.close()


def test_reader_and_writer_on_same_fd(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    events = []

    def on_write():
        events.append("w")
        loop.remove_writer(a)

    def on_read():
        events.append(("r", a.recv(10)))
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, on_read)
    loop.add_writer(a, on_write)
    loop.call_later(0.02, b.send, b"ping")
    loop.run_forever()
    assert events == ["w", ("r", b"ping")]
    a.close(), b.close()


def test_replacing_reader_uses_new_callback(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    got = []
    loop.add_reader(a, lambda: got.append("old"))
    loop.add_reader(a, lambda: (got.append(("new", a.recv(10))), loop.stop()))
    b.send(b"z")
    loop.run_forever()
    assert got == [("new", b"z")]
    loop.remove_reader(a)
    a.close(), b.close()


def test_remove_reader_stops_callbacks(loop):
    a, b = socket.socketpair()
    got = []
    loop.add_reader(a, lambda: got.append(1))
    assert loop.remove_reader(a)
    b.send(b"data")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert got == []
    a.close(), b.close()


def test_peer_close_wakes_reader(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    got = []

    def on_read():
        got.append(a.recv(10))
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, on_read)
    loop.call_later(0.01, b.close)
    loop.run_forever()
    assert got == [b""]
    a.close()


@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (-1, ValueError, "Invalid file descriptor: -1"),
        ("nope", ValueError, "Invalid file object: 'nope'"),
        (object(), ValueError, "Invalid file object"),
    ],
)
def test_bad_fd_rejected(loop, bad, exc, msg):
    for method in (loop.add_reader, loop.add_writer):
        with pytest.raises(exc, match=msg):
            method(bad, print)
    for method in (loop.remove_reader, loop.remove_writer):
        with pytest.raises(exc, match=msg):
            method(bad)


def test_closed_socket_object_rejected(loop):
    s = socket.socket()
    s.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(s, print)


def test_regular_file_rejected_like_epoll(loop, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")
    with open(p, "rb") as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f, print)


def test_add_reader_on_closed_loop(loop):
    a, b = socket.socketpair()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_reader(a, print)
    assert loop.remove_reader(a) is False
    a.close(), b.close()


def test_watchers_leak_no_fds(loop):
    before = open_fds()
    for _ in range(200):
        a, b = socket.socketpair()
        loop.add_reader(a, print)
        loop.add_writer(b, print)
        loop.remove_reader(a)
        loop.remove_writer(b)
        a.close(), b.close()
    assert open_fds() == before


def test_fd_closed_without_remove_then_reused(floop):
    """A user closes a watched fd without remove_reader; the number is reused.
    (Stock asyncio keeps a stale selector key here and never wakes; ferroloop re-registers.)"""
    loop = floop
    a, b = socket.socketpair()
    loop.add_reader(a, print)
    fd = a.fileno()
    a.close(), b.close()
    c, d = socket.socketpair()
    assert fd in (c.fileno(), d.fileno())
    reader = c if c.fileno() == fd else d
    other = d if reader is c else c
    reader.setblocking(False)
    got = []
    loop.add_reader(reader, lambda: (got.append(reader.recv(10)), loop.stop()))
    other.send(b"again")
    loop.run_forever()
    assert got == [b"again"]
    loop.remove_reader(reader)
    c.close(), d.close()


def test_remove_watchers_of_a_socket_closed_meanwhile(loop):
    """As selectors find a key by its file object once fileno() says -1: True, then the
    object is unknown again (ValueError, as for any closed socket)."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    loop.add_reader(a, print)
    loop.add_writer(c, print)
    a.close(), c.close()
    assert loop.remove_reader(a) is True
    assert loop.remove_writer(c) is True
    for method, sock in ((loop.remove_reader, a), (loop.remove_writer, c)):
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            method(sock)
    b.close(), d.close()


def test_remove_reader_of_a_closed_socket_on_a_closed_loop(loop):
    a, b = socket.socketpair()
    a.close()
    loop.close()
    assert loop.remove_reader(a) is False
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.remove_reader(object())
    b.close()
