"""Pipes and subprocesses.

Pipes are native transports (the stream engine in pipe mode). A subprocess is asyncio's
own `_UnixSubprocessTransport` (Popen + pipe plumbing, reused as it is) over those pipes;
what ferroloop adds is how a child's exit is noticed: a pidfd (Linux 5.3+) watched by
the loop like any fd — no SIGCHLD handler (a user's stays untouched), no polling, and the
child is reaped at once, so no zombies however many children run. Where pidfds are
missing (macOS, old kernels) a thread per child blocks in waitpid(pid) instead.

The child itself is started (Popen: fork, exec, then a blocking read of the exec-error
pipe until the exec happened) on one spawner thread per process, not on the loop thread:
the loop goes on meanwhile, and no blocking os.read is made on it (blockbuster, which
aiohttp's and anyio's suites run, refuses that outside asyncio's own frames). The thread
lives as long as the process, so a child's PR_SET_PDEATHSIG means what it means under
asyncio (it is tied to the thread that forked).
"""

import functools
import os
import queue
import subprocess
import sys
import threading
import warnings
from asyncio import events, unix_events
from asyncio.log import logger

from ._transports import ReadPipeTransport, WritePipeTransport


def _exit_code(status):
    return os.waitstatus_to_exitcode(status)


class SubprocessMixin:
    """Pipes and subprocesses.

    Needs from the loop: create_future, _add_reader, _remove_reader,
    call_soon_threadsafe, get_debug, is_closed (CoreLoop)."""

    # -- pipes ---------------------------------------------------------------------------

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Read from a pipe (or FIFO, socket, tty) through a protocol."""
        return await self._connect_pipe(self._make_read_pipe_transport, protocol_factory, pipe, "Read")

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Write to a pipe (or FIFO, socket, tty) through a protocol, with flow control."""
        return await self._connect_pipe(self._make_write_pipe_transport, protocol_factory, pipe, "Write")

    async def _connect_pipe(self, make_transport, protocol_factory, pipe, end):
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = make_transport(pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():
            logger.debug("%s pipe %r connected: (%r, %r)", end, pipe.fileno(), transport, protocol)
        return transport, protocol

    # -- subprocesses --------------------------------------------------------------------

    async def subprocess_shell(
        self,
        protocol_factory,
        cmd,
        *,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=True,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run `cmd` through the shell; returns (transport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if not shell:
            raise ValueError("shell must be True")
        self._check_subprocess_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs
        )
        if self.get_debug():
            logger.info("run shell command %r: %r", cmd, transport)
        return transport, protocol

    async def subprocess_exec(
        self,
        protocol_factory,
        program,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=False,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run `program` with `args`; returns (transport, protocol)."""
        if shell:
            raise ValueError("shell must be False")
        self._check_subprocess_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, (program,) + args, False, stdin, stdout, stderr, bufsize, **kwargs
        )
        if self.get_debug():
            logger.info("execute program %r: %r", program, transport)
        return transport, protocol

    @staticmethod
    def _check_subprocess_args(universal_newlines, bufsize, text, encoding, errors):
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if bufsize != 0:
            raise ValueError("bufsize must be 0")
        if text:
            raise ValueError("text must be False")
        if encoding is not None:
            raise ValueError("encoding must be None")
        if errors is not None:
            raise ValueError("errors must be None")

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        popen = functools.partial(
            subprocess.Popen,
            args,
            shell=shell,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            universal_newlines=False,
            bufsize=bufsize,
            **kwargs,
        )
        watcher = _user_child_watcher()
        if watcher is not None:
            return await self._spawn_with_watcher(
                watcher, popen, protocol, args, shell, stdin, stdout, stderr, bufsize, extra
            )
        proc = await _spawn(self, popen)
        waiter = self.create_future()
        transp = _UnixSubprocessTransport(
            self,
            protocol,
            args,
            shell,
            stdin,
            stdout,
            stderr,
            bufsize,
            waiter=waiter,
            extra=extra,
            _ferroloop_proc=proc,
        )
        self._watch_child(transp.get_pid(), transp)
        return await _started(transp, waiter)

    async def _spawn_with_watcher(
        self, watcher, popen, protocol, args, shell, stdin, stdout, stderr, bufsize, extra
    ):
        # A program that installed its own child watcher (3.11-3.13) gets asyncio's protocol
        # with it: checked before the child exists, told about the child, reaping it.
        # As asyncio does per version: 3.11 asks what __enter__ returns, 3.12+ the watcher itself.
        with watcher as entered:
            if sys.version_info < (3, 12):
                watcher = entered
            if not watcher.is_active():
                raise RuntimeError(
                    "asyncio.get_child_watcher() is not activated, subprocess support is not installed."
                )
            proc = await _spawn(self, popen)
            waiter = self.create_future()
            transp = _UnixSubprocessTransport(
                self,
                protocol,
                args,
                shell,
                stdin,
                stdout,
                stderr,
                bufsize,
                waiter=waiter,
                extra=extra,
                _ferroloop_proc=proc,
            )
            watcher.add_child_handler(transp.get_pid(), self._child_watcher_callback, transp)
            return await _started(transp, waiter)

    def _child_watcher_callback(self, pid, returncode, transp):
        self.call_soon_threadsafe(transp._process_exited, returncode)

    # -- child exit ------------------------------------------------------------------------

    def _watch_child(self, pid, transp):
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._watch_child_in_thread(pid, transp)
            return
        self._add_reader(pidfd, self._child_exited, pidfd, pid, transp)

    def _child_exited(self, pidfd, pid, transp):
        self._remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Someone else reaped it (Popen.poll() in transport.close()).
            returncode = transp._proc.returncode if transp._proc is not None else None
            if returncode is None:
                logger.warning(
                    "child process pid %d exit status already read: will report returncode 255", pid
                )
                returncode = 255
        else:
            returncode = _exit_code(status)
        if self.get_debug():
            logger.debug("process %s exited with returncode %s", pid, returncode)
        transp._process_exited(returncode)

    def _watch_child_in_thread(self, pid, transp):
        def wait():
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                returncode = 255
            else:
                returncode = _exit_code(status)
            if not self.is_closed():
                self.call_soon_threadsafe(transp._process_exited, returncode)

        threading.Thread(target=wait, name=f"ferroloop-waitpid-{pid}", daemon=True).start()


class _UnixSubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's subprocess transport, adopting a child the spawner thread started."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, _ferroloop_proc, **kwargs):
        self._proc = _ferroloop_proc


_spawn_jobs = None
_spawner_thread = None  # lives as long as the process (see the module docstring)
_spawn_lock = threading.Lock()


def _spawn(loop, popen):
    """A future for `popen()` run on the spawner thread."""
    global _spawn_jobs, _spawner_thread
    fut = loop.create_future()
    with _spawn_lock:
        if _spawn_jobs is None:
            jobs = queue.SimpleQueue()
            _spawner_thread = threading.Thread(
                target=_spawner, args=(jobs,), name="ferroloop-spawner", daemon=True
            )
            _spawner_thread.start()
            _spawn_jobs = jobs
    _spawn_jobs.put((loop, fut, popen))
    return fut


def _spawner(jobs):
    while True:
        loop, fut, job = jobs.get()
        proc = exc = None
        try:
            proc = job()
        except BaseException as e:  # handed to the awaiting task, raised there
            exc = e
        if loop is not None:
            try:
                loop.call_soon_threadsafe(_deliver, fut, proc, exc)
            except RuntimeError:  # the loop closed meanwhile: nobody takes the child
                if proc is not None:
                    _discard(proc)
                    proc.wait()
        loop = fut = job = proc = exc = None


def _deliver(fut, proc, exc):
    if fut.cancelled():
        if proc is not None:
            _discard(proc)
            _spawn_jobs.put((None, None, proc.wait))  # reaped off the loop thread
    elif exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(proc)


def _discard(proc):
    """A child started for a caller that is gone (cancelled, or its loop closed)."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        proc.kill()
    except ProcessLookupError:
        pass


async def _started(transp, waiter):
    """The transport once its pipes are connected; on failure the child is closed and
    waited for, as asyncio does."""
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transp.close()
        await transp._wait()
        raise
    return transp


def _user_child_watcher():
    """The child watcher set with asyncio.set_child_watcher() (3.11-3.13), if any; pidfds
    otherwise (and always on 3.14+, where watchers are gone)."""
    if sys.version_info >= (3, 14):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = events.get_event_loop_policy()
    return getattr(policy, "_watcher", None)
