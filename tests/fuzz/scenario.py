"""The differential tester's engine: a program of loop and transport operations, run on
one event loop, and what a program could observe of it (issue 11, "A differential
tester"). `observe(factory, program)` runs it on a fresh loop from `factory` and returns
the observation; the test compares ferroloop's with stock asyncio's.

A program drives one connection (TCP or Unix) whose client side is the transport under
test, and whose server side hashes what arrives; around it, timers (some cancelled),
call_soon_threadsafe from a thread, pause/resume of the server's reading, and the ends:
write_eof, close, abort, the peer closing or resetting, the server closing while a second
client connects.

What is compared: each operation's outcome (None, or the exception's type and message);
the protocols' callback sequences (data and flow-control callbacks left out: how data is
chunked is the kernel's business); the bytes delivered (all of them, by sha256, when
nothing was aborted; otherwise that they are a prefix of what was written); the order timers
and threadsafe callbacks ran in; descriptors and threads left over once the loop is closed.
"""

import asyncio
import gc
import hashlib
import os
import random
import tempfile
import threading

# Everything that waits has a bound: a hang is an observation, not a stuck test.
WAIT = 10.0


def _exc(e):
    """An exception as a program may see it; resets and broken pipes are one kind (which
    one the kernel reports depends on timing on any loop)."""
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ("ConnectionError",)
    return (type(e).__name__, str(e))


class _Recorded(asyncio.Protocol):
    """Logs the callbacks a program sees; `lost` resolves at connection_lost."""

    def __init__(self, log):
        self.log = log
        self.transport = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.log.append("made")

    def eof_received(self):
        self.log.append("eof")

    def connection_lost(self, exc):
        self.log.append(("lost", None if exc is None else _exc(exc)[0]))
        if not self.lost.done():
            self.lost.set_result(None)


class Sink(_Recorded):
    """The server side: hashes what arrives."""

    def __init__(self, log):
        super().__init__(log)
        self.h = hashlib.sha256()
        self.size = 0

    def data_received(self, data):
        self.h.update(data)
        self.size += len(data)


class Client(_Recorded):
    def data_received(self, data):
        self.log.append("data")


def payload(size, seed):
    return random.Random(seed).randbytes(size)


async def _run(program, tmpdir):
    loop = asyncio.get_running_loop()
    kind = program["kind"]
    server_log, client_log = [], []
    sinks = []

    def sink_factory():
        sinks.append(Sink(server_log))
        return sinks[-1]

    if kind == "unix":
        path = os.path.join(tmpdir, "s.sock")
        server = await loop.create_unix_server(sink_factory, path)
        tr, client = await loop.create_unix_connection(lambda: Client(client_log), path)
    else:
        server = await loop.create_server(sink_factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()[:2]
        tr, client = await loop.create_connection(lambda: Client(client_log), *addr)
    while not sinks:
        await asyncio.sleep(0)
    sink = sinks[0]

    written = hashlib.sha256()
    written_size = 0
    outcomes = []
    fired, threadsafe_seen, deadlines = [], [], []
    expected_timers = 0
    aborted = False
    threads = []

    for i, op in enumerate(program["ops"]):
        name = op[0]
        try:
            if name == "write":
                data = payload(op[1], i)
                tr.write(data)
                written.update(data)
                written_size += len(data)
            elif name == "writelines":
                bufs = [payload(n, i * 1000 + j) for j, n in enumerate(op[1])]
                tr.writelines(bufs)
                for b in bufs:
                    written.update(b)
                    written_size += len(b)
            elif name == "write_eof":
                tr.write_eof()
            elif name == "limits":
                tr.set_write_buffer_limits(high=op[1])
            elif name == "pause_peer":
                sink.transport.pause_reading()
            elif name == "resume_peer":
                sink.transport.resume_reading()
            elif name == "sleep":
                for _ in range(op[1]):
                    await asyncio.sleep(0)
            elif name == "timer":
                _, ms, cancel, tag = op
                h = loop.call_later(ms / 1000, fired.append, tag)
                deadlines.append((h.when(), len(deadlines), tag))
                if cancel:
                    h.cancel()
                    deadlines.pop()
                else:
                    expected_timers += 1
            elif name == "threadsafe":
                n, tag = op[1], i  # threads interleave freely; each one's order is FIFO

                def produce(n=n, tag=tag):
                    for k in range(n):
                        loop.call_soon_threadsafe(threadsafe_seen.append, (tag, k))

                t = threading.Thread(target=produce)
                t.start()
                threads.append(t)
            elif name == "close":
                tr.close()
                aborted = True  # later writes may or may not be sent before the end
            elif name == "abort":
                tr.abort()
                aborted = True
            elif name == "peer_close":
                sink.transport.close()
                aborted = True  # what the client still writes goes nowhere
            elif name == "peer_abort":
                sink.transport.abort()
                aborted = True
            elif name == "server_close":
                server.close()
                # a client connecting while the server closes is refused, or accepted
                # and then closed: either way it must not hang, leak, or raise oddly
                try:
                    if kind == "unix":
                        t2, _ = await asyncio.wait_for(
                            loop.create_unix_connection(asyncio.Protocol, path), WAIT
                        )
                    else:
                        t2, _ = await asyncio.wait_for(loop.create_connection(asyncio.Protocol, *addr), WAIT)
                    t2.close()
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            outcomes.append(None)
        except Exception as e:  # the outcome is the observation
            outcomes.append(_exc(e))

    for t in threads:
        t.join()
    # Let everything settle, on real conditions, bounded: timers and threadsafe callbacks
    # ran, then the connection ends (write_eof if the client is still open) on both sides.
    ts_expected = sum(op[1] for op in program["ops"] if op[0] == "threadsafe")
    settled = True
    try:
        async with asyncio.timeout(WAIT):
            while len(fired) < expected_timers or len(threadsafe_seen) < ts_expected:
                await asyncio.sleep(0.001)
            if sink.transport is not None and not sink.transport.is_closing():
                sink.transport.resume_reading()
            if not tr.is_closing():
                try:
                    tr.write_eof()
                except OSError:
                    # reset by the peer, not yet noticed by the loop: shutdown() fails
                    # (ENOTCONN) on either loop, depending on timing; the loss follows
                    pass
            await asyncio.shield(sink.lost)
            await asyncio.shield(client.lost)
    except TimeoutError:
        settled = False
    if not tr.is_closing():
        tr.abort()
    if sink.transport is not None and not sink.transport.is_closing():
        sink.transport.abort()
    server.close()
    await server.wait_closed()
    for _ in range(3):
        await asyncio.sleep(0)

    if any(op[0] in ("peer_close", "peer_abort") for op in program["ops"]):
        # Whether the client reads the peer's EOF before a write fails depends on how
        # much was still in flight, i.e. on how many iterations the data took (ferroloop
        # reads 64 KiB at a time, asyncio 256 KiB): timing, not semantics. What must hold
        # on any loop: made first, connection_lost exactly once, last.
        lost = [e for e in client_log if isinstance(e, tuple)]
        client_log = [
            "made ... lost once"
            if client_log[:1] == ["made"] and len(lost) == 1 and client_log[-1] == lost[0]
            else client_log
        ]
    obs = {
        "outcomes": outcomes,
        "settled": settled,
        "client": client_log,
        "server": server_log,
        # which timers ran, and that they ran by deadline (equal ones in scheduling order):
        # the deadlines themselves depend on how long the operations took
        "timers": sorted(fired),
        "timers_in_order": fired == [tag for _, _, tag in sorted(deadlines)],
        "threadsafe": {tag: [k for t, k in threadsafe_seen if t == tag] for tag, _ in threadsafe_seen},
    }
    if aborted:
        # after close/abort/a peer's end, later writes are dropped or refused: at most
        obs["delivered_at_most_written"] = sink.size <= written_size
    else:
        obs["delivered"] = (sink.size, sink.h.hexdigest()) == (written_size, written.hexdigest())
    return obs


def _fds():
    gc.collect()
    return sorted(int(f) for f in os.listdir("/proc/self/fd"))


def observe(factory, program):
    """Runs `program` on a fresh loop from `factory`; returns what a program could see."""
    fds0, threads0 = _fds(), threading.active_count()
    loop = factory()
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            obs = loop.run_until_complete(asyncio.wait_for(_run(program, tmpdir), 4 * WAIT))
        except Exception as e:
            obs = {"crashed": _exc(e)}
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
    del loop
    fds1 = _fds()
    obs["fds_left"] = len(fds1) - len(fds0)
    obs["threads_left"] = threading.active_count() - threads0
    return obs
