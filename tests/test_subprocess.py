"""Pipes and subprocesses: connect_read_pipe/connect_write_pipe, subprocess_exec/shell,
communicate, signals to children, exit codes, many children, no zombies, no fd leaks,
and a user's SIGCHLD handler left alone."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from netutil import open_fds


def zombies():
    """Children of this process that have exited but were not reaped."""
    me = os.getpid()
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state == "Z":
            count += 1
    return count


@pytest.fixture
def clean(loop):
    """No fd and no zombie may be left behind by the test body."""
    before = open_fds()
    yield loop
    loop.run_until_complete(asyncio.sleep(0.05))
    assert zombies() == 0
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()  # the loop's own fds (signal socketpair) go with it
    assert open_fds() <= before


class PipeReader(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.eof = False
        self.lost = loop.create_future()

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_read_and_write_pipes(clean):
    loop = clean

    async def main():
        r, w = os.pipe()
        rt, rp = await loop.connect_read_pipe(lambda: PipeReader(loop), os.fdopen(r, "rb", 0))
        paused = []

        class Writer(asyncio.BaseProtocol):
            def pause_writing(self):
                paused.append(True)

            def resume_writing(self):
                paused.append(False)

            def connection_lost(self, exc):
                pass

        wt, wp = await loop.connect_write_pipe(Writer, os.fdopen(w, "wb", 0))
        assert rt.get_extra_info("pipe").fileno() == r
        assert isinstance(rt, asyncio.ReadTransport) and isinstance(wt, asyncio.WriteTransport)
        payload = os.urandom(2 * 1024 * 1024)  # more than a pipe holds: flow control engages
        wt.write(payload)
        assert wt.get_write_buffer_size() > 0 and paused == [True]
        wt.close()
        assert await asyncio.wait_for(rp.lost, 10) is None
        assert bytes(rp.data) == payload and rp.eof
        assert paused == [True, False]

    loop.run_until_complete(main())


def test_write_pipe_notices_reader_gone(clean):
    loop = clean

    async def main():
        r, w = os.pipe()
        lost = loop.create_future()

        class Writer(asyncio.BaseProtocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        wt, _ = await loop.connect_write_pipe(Writer, os.fdopen(w, "wb", 0))
        wt.write(b"x" * 200_000)  # some stays buffered
        os.close(r)  # the reader goes away
        exc = await asyncio.wait_for(lost, 5)
        assert isinstance(exc, BrokenPipeError)
        wt.write(b"dropped")  # after the peer left: silently dropped, like asyncio

    loop.run_until_complete(main())


def test_pipe_rejects_regular_file(loop, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")

    async def main():
        with open(p, "rb") as f:
            with pytest.raises(ValueError, match="Pipe transport is for pipes/sockets only"):
                await loop.connect_read_pipe(asyncio.Protocol, f)

    loop.run_until_complete(main())


def test_cat_echoes_10_mb(clean):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        data = os.urandom(10 * 1024 * 1024)
        out, err = await proc.communicate(data)
        assert out == data and err is None
        assert proc.returncode == 0

    loop.run_until_complete(main())


def test_shell_and_exit_codes(clean):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2; exit 7", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert (out, err, proc.returncode) == (b"out\n", b"err\n", 7)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import sys; sys.exit(3)")
        assert await proc.wait() == 3

    loop.run_until_complete(main())


@pytest.mark.parametrize(
    "how, code", [("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL), ("send_signal", -signal.SIGUSR1)]
)
def test_signals_to_child(clean, how, code):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        if how == "send_signal":
            proc.send_signal(signal.SIGUSR1)
        else:
            getattr(proc, how)()
        assert await asyncio.wait_for(proc.wait(), 10) == code
        assert proc.returncode == code

    loop.run_until_complete(main())


def test_many_children_at_once(clean):
    loop = clean

    async def main():
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", f"import sys; sys.exit({i % 5})")
            for i in range(40)
        ]
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 60)
        assert codes == [i % 5 for i in range(40)]

    loop.run_until_complete(main())


def test_child_dies_early_then_stdin_write_fails(clean):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass", stdin=subprocess.PIPE)
        await proc.wait()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                proc.stdin.write(b"x" * 65536)
                await proc.stdin.drain()
        proc.stdin.close()

    loop.run_until_complete(main())


def test_killed_mid_write(clean):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30", stdin=subprocess.PIPE)
        proc.stdin.write(b"y" * (1 << 20))  # sleep never reads: this stays buffered
        writer = asyncio.create_task(proc.stdin.drain())
        await asyncio.sleep(0.05)
        proc.kill()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await asyncio.wait_for(writer, 10)
        assert await proc.wait() == -signal.SIGKILL
        proc.stdin.close()

    loop.run_until_complete(main())


def test_communicate_timeout_then_kill(clean):
    loop = clean

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30", stdout=subprocess.PIPE)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 0.2)
        proc.kill()
        await proc.wait()

    loop.run_until_complete(main())


def test_subprocess_argument_errors(loop):
    async def main():
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["ls"])
        with pytest.raises(ValueError, match="bufsize must be 0"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "ls", bufsize=1)
        with pytest.raises(ValueError, match="universal_newlines must be False"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "ls", universal_newlines=True)
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program")

    loop.run_until_complete(main())


def test_users_sigchld_handler_is_left_alone(clean):
    """ferroloop watches children without SIGCHLD: a user's handler stays installed and
    still sees every child exit."""
    loop = clean
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    old = signal.signal(signal.SIGCHLD, handler)
    try:

        async def main():
            for _ in range(3):
                proc = await asyncio.create_subprocess_exec("true")
                assert await proc.wait() == 0
            await asyncio.sleep(0.05)

        loop.run_until_complete(main())
        assert signal.getsignal(signal.SIGCHLD) is handler
        assert seen and all(s == signal.SIGCHLD for s in seen)
    finally:
        signal.signal(signal.SIGCHLD, old)


def test_signal_handlers_work_beside_subprocesses(clean):
    loop = clean
    got = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR2, got.append, "usr2")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import os, signal; os.kill({os.getpid()}, signal.SIGUSR2)"
        )
        await proc.wait()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        loop.remove_signal_handler(signal.SIGUSR2)

    loop.run_until_complete(main())
    assert got == ["usr2"]


def test_user_child_watcher_is_asked_as_each_python_asks_it(loop):
    """A watcher a program installed itself (3.11-3.13) is asked before the child is made,
    as asyncio asks it: 3.11 asks what its __enter__ returns, 3.12 and 3.13 the watcher
    itself; an inactive one refuses to spawn."""
    import warnings

    if sys.version_info >= (3, 14):
        pytest.skip("child watchers are gone in 3.14")
    asked = []

    class WatcherMethods:
        def __init__(self, name, entered=None):
            self.name, self.entered = name, entered

        def add_child_handler(self, pid, callback, *args):
            raise AssertionError("an inactive watcher must not be used")

        def remove_child_handler(self, pid):
            return False

        def attach_loop(self, loop):
            pass

        def close(self):
            pass

        def is_active(self):
            asked.append(self.name)
            return False

        def __enter__(self):
            return self.entered

        def __exit__(self, *exc):
            pass

    with warnings.catch_warnings():  # the program's own use of what 3.12 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)

        class Watcher(WatcherMethods, asyncio.AbstractChildWatcher):
            pass

    async def main():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(Watcher("installed", entered=Watcher("entered")))
        try:
            with pytest.raises(RuntimeError, match="is not activated"):
                await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                asyncio.set_child_watcher(None)

    loop.run_until_complete(main())
    assert asked == (["entered"] if sys.version_info < (3, 12) else ["installed"])


@pytest.mark.parametrize("watcher", [None, "threaded"])
def test_spawn_makes_no_blocking_read_on_the_loop_thread(loop, monkeypatch, watcher):
    """Popen reads its exec-error pipe, blocking until the child has exec'd: ferroloop
    starts children on its spawner thread, so that read is never on the loop thread
    (blockbuster refuses it outside asyncio's frames). Success and a failed exec both,
    and with a child watcher the program installed (3.11-3.13)."""
    import threading
    import warnings

    if watcher is not None:
        if sys.version_info >= (3, 14):
            pytest.skip("child watchers are gone in 3.14")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            w = asyncio.ThreadedChildWatcher()
            asyncio.set_child_watcher(w)

        def unset():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                asyncio.set_child_watcher(None)
                w.close()

    loop_thread = threading.get_ident()
    blocking_reads = []
    real = os.read

    def spy(fd, n):
        if threading.get_ident() == loop_thread and os.get_blocking(fd):
            blocking_reads.append(fd)
        return real(fd, n)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('hi')", stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program")
        return out, proc.returncode

    monkeypatch.setattr(os, "read", spy)
    try:
        out, rc = loop.run_until_complete(main())
    finally:
        if watcher is not None:
            unset()
    assert (out, rc) == (b"hi\n", 0)
    # (stock asyncio makes that read on the loop thread where Popen forks; 3.13+ often
    # posix_spawns instead, with no error pipe)
    if not isinstance(loop, asyncio.BaseEventLoop):
        assert blocking_reads == []


def test_write_pipe_and_stdin_refuse_reading_calls_as_asyncio(clean):
    """Issue 11 finding 8: asyncio's write pipe is a Transport whose reading methods raise
    NotImplementedError (ReadTransport's); a subprocess's stdin is the same transport."""
    loop = clean

    async def main():
        r, w = os.pipe()
        tr, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb"))
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            for transport in (tr, proc.stdin.transport):
                assert isinstance(transport, asyncio.ReadTransport)
                for method in ("pause_reading", "resume_reading", "is_reading"):
                    with pytest.raises(NotImplementedError):
                        getattr(transport, method)()
                assert not transport.is_closing()  # and it is unharmed
        finally:
            tr.close()
            os.close(r)
            proc.stdin.close()
            await proc.wait()

    loop.run_until_complete(main())
