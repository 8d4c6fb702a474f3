"""Subprocesses and pipes as programs use them: 10 MB echoed through `cat`, communicate(),
many children, anyio's process API; and the faults — a child that dies early, a pipe closed
by its peer, a child killed mid-write, a program that does not exist. Each gives asyncio's
exception; every child is reaped by the time wait() returns and no fd or zombie is left
(counted while the loop still runs, and again by the `arun` fixture after it closed)."""

import asyncio
import hashlib
import os
import signal
import subprocess
import sys

import anyio
import pytest

from .compatlib import open_fds, pid_gone, zombie_children

MB = 1024 * 1024


def blob(n, seed=b"subprocess"):
    block = hashlib.sha256(seed).digest() * 2048
    return (block * (n // len(block) + 1))[:n]


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.02)


class Accounting:
    """fds and zombies before/after, inside the running loop."""

    async def __aenter__(self):
        await settle()
        self.fds = open_fds()
        self.zombies = set(zombie_children())
        return self

    async def __aexit__(self, *exc):
        if exc[0] is not None:
            return False
        await settle()
        assert set(zombie_children()) <= self.zombies, "zombie child left behind"
        after = open_fds()
        assert len(after) <= len(self.fds), f"fds leaked: {sorted(set(after) - set(self.fds))}"
        return False


def test_cat_echoes_10mb(arun):
    data = blob(10 * MB)

    async def main():
        async with Accounting():
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

            async def feed():
                view = memoryview(data)
                for i in range(0, len(data), 256 * 1024):
                    proc.stdin.write(view[i : i + 256 * 1024])
                    await proc.stdin.drain()
                proc.stdin.close()
                await proc.stdin.wait_closed()

            async def drain_out():
                h = hashlib.sha256()
                n = 0
                while chunk := await proc.stdout.read(128 * 1024):
                    h.update(chunk)
                    n += len(chunk)
                return n, h.hexdigest()

            _, (n, digest), err = await asyncio.gather(feed(), drain_out(), proc.stderr.read())
            assert n == len(data)
            assert digest == hashlib.sha256(data).hexdigest()
            assert err == b""
            assert await proc.wait() == 0
            assert pid_gone(proc.pid)

            # the same through communicate()
            proc = await asyncio.create_subprocess_exec("cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            out, _ = await proc.communicate(data)
            assert out == data
            assert proc.returncode == 0 and pid_gone(proc.pid)

    arun(main)


def test_shell_env_cwd_and_exit_codes(arun, tmp_path):
    async def main():
        async with Accounting():
            proc = await asyncio.create_subprocess_shell(
                'echo "$FERRO_VAR" && pwd && echo oops >&2 && exit 7',
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "FERRO_VAR": "from-env"},
                cwd=str(tmp_path),
            )
            out, err = await proc.communicate()
            assert out.decode().splitlines() == ["from-env", str(tmp_path)]
            assert err == b"oops\n"
            assert proc.returncode == 7

            # 40 children at once, each with its own exit code
            procs = [
                await asyncio.create_subprocess_exec(sys.executable, "-c", f"import sys; sys.exit({i})")
                for i in range(40)
            ]
            codes = await asyncio.gather(*(p.wait() for p in procs))
            assert codes == list(range(40))
            assert all(pid_gone(p.pid) for p in procs)

            # signals: terminate() and send_signal()
            proc = await asyncio.create_subprocess_exec("sleep", "30")
            proc.terminate()
            assert await proc.wait() == -signal.SIGTERM
            proc = await asyncio.create_subprocess_exec("sleep", "30")
            proc.send_signal(signal.SIGUSR1)
            assert await proc.wait() == -signal.SIGUSR1

    arun(main)


def test_program_not_found(arun, tmp_path):
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\necho no\n")
    not_executable.chmod(0o644)

    async def main():
        async with Accounting():
            for _ in range(3):
                with pytest.raises(FileNotFoundError):
                    await asyncio.create_subprocess_exec(
                        "/nonexistent/ferroloop-no-such-program",
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                    )
            with pytest.raises(PermissionError):
                await asyncio.create_subprocess_exec(str(not_executable), stdout=subprocess.PIPE)

    arun(main)


# -- faults --------------------------------------------------------------------------------


def test_child_dies_early(arun):
    """The child exits before reading its stdin: writing to it fails with asyncio's
    exception; its output up to that point is intact; the exit code is right."""

    async def main():
        async with Accounting():
            # exits at once, without reading anything
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "echo bye; exit 3", stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert await proc.stdout.read() == b"bye\n"
            assert await proc.wait() == 3
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(64):
                    proc.stdin.write(b"x" * 65536)
                    await proc.stdin.drain()
            proc.stdin.close()

            # reads 1000 bytes, then exits while we are still writing 10 MB
            proc = await asyncio.create_subprocess_exec(
                "head", "-c", "1000", stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            data = blob(10 * MB, b"head")
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for i in range(0, len(data), 64 * 1024):
                    proc.stdin.write(data[i : i + 64 * 1024])
                    await proc.stdin.drain()
            assert await proc.stdout.read() == data[:1000]
            assert await proc.wait() == 0
            proc.stdin.close()

            # communicate() swallows the broken pipe, as asyncio's does
            proc = await asyncio.create_subprocess_exec(
                "head", "-c", "10", stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate(data)
            assert out == data[:10] and proc.returncode == 0

    arun(main)


def test_killed_mid_write_and_mid_read(arun):
    async def main():
        async with Accounting():
            # mid-write: cat's stdout is never read, so our 10 MB back up and stay buffered
            proc = await asyncio.create_subprocess_exec("cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            data = blob(10 * MB, b"kill")

            async def writer():
                for i in range(0, len(data), 256 * 1024):
                    proc.stdin.write(data[i : i + 256 * 1024])
                    await proc.stdin.drain()

            task = asyncio.create_task(writer())
            await asyncio.sleep(0.1)
            assert not task.done()  # blocked on back-pressure
            proc.kill()
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                await task
            proc.stdin.close()
            # whatever cat had written, then EOF (read before wait(): on 3.11 wait() also
            # waits for the pipes, and a full stdout pipe nobody reads would block it)
            out = await proc.stdout.read()
            assert data.startswith(out)
            assert await proc.wait() == -signal.SIGKILL
            assert pid_gone(proc.pid)

            # mid-read: a child streaming output without end, killed after 1 MB
            proc = await asyncio.create_subprocess_exec("yes", "ferroloop", stdout=subprocess.PIPE)
            got = await proc.stdout.readexactly(MB)
            assert got.startswith(b"ferroloop\nferroloop\n")
            proc.kill()
            rest = await proc.stdout.read()  # reaches EOF
            assert (got + rest).count(b"ferroloop\n") >= MB // 10
            assert await proc.wait() == -signal.SIGKILL
            assert pid_gone(proc.pid)

    arun(main)


class PipeProto(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
        self.data = bytearray()
        self.eof = False

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_pipe_closed_by_peer(arun):
    async def main():
        loop = asyncio.get_running_loop()
        async with Accounting():
            # write end, nothing buffered: the reader goes away -> connection_lost(None)
            r, w = os.pipe()
            transport, proto = await loop.connect_write_pipe(PipeProto, os.fdopen(w, "wb", buffering=0))
            transport.write(b"hello")
            assert os.read(r, 5) == b"hello"
            os.close(r)
            assert await asyncio.wait_for(proto.lost, 5) is None
            assert transport.is_closing()

            # write end with data still buffered: the reader goes away -> BrokenPipeError
            r, w = os.pipe()
            transport, proto = await loop.connect_write_pipe(PipeProto, os.fdopen(w, "wb", buffering=0))
            transport.write(b"z" * (4 * MB))  # far more than the pipe holds
            assert transport.get_write_buffer_size() > 0
            os.read(r, 1000)
            os.close(r)
            exc = await asyncio.wait_for(proto.lost, 5)
            assert isinstance(exc, BrokenPipeError), exc
            assert transport.get_write_buffer_size() == 0

            # read end: the writer closes -> all data, eof_received, connection_lost(None)
            r, w = os.pipe()
            transport, proto = await loop.connect_read_pipe(PipeProto, os.fdopen(r, "rb", buffering=0))
            os.write(w, b"last words")
            os.close(w)
            assert await asyncio.wait_for(proto.lost, 5) is None
            assert bytes(proto.data) == b"last words" and proto.eof

            # StreamReader over a pipe whose writer is a child that dies
            r, w = os.pipe()
            child = await asyncio.create_subprocess_exec("sh", "-c", "printf abc; kill -9 $$", stdout=w)
            os.close(w)
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", buffering=0)
            )
            assert await reader.read() == b"abc"
            assert await child.wait() == -signal.SIGKILL
            transport.close()

    arun(main)


# -- a library on top: anyio's process API ------------------------------------------------------


def test_anyio_processes(arun):
    async def main():
        async with Accounting():
            result = await anyio.run_process(["sh", "-c", "echo out; echo err >&2; exit 5"], check=False)
            assert (result.returncode, result.stdout, result.stderr) == (5, b"out\n", b"err\n")
            with pytest.raises(subprocess.CalledProcessError):
                await anyio.run_process(["false"])

            data = blob(2 * MB, b"anyio")
            async with await anyio.open_process(["sha256sum"]) as proc:
                async with anyio.create_task_group() as tg:

                    async def feed():
                        for i in range(0, len(data), 64 * 1024):
                            await proc.stdin.send(data[i : i + 64 * 1024])
                        await proc.stdin.aclose()

                    tg.start_soon(feed)
                    out = b""
                    async for chunk in proc.stdout:
                        out += chunk
                assert await proc.wait() == 0
            assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()

    arun(main)
