"""Helpers of the compatibility suite (the fixtures built on them are in conftest.py)."""

import asyncio
import gc
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import ferroloop

# The control is asyncio's own loop for this platform (SelectorEventLoop on Linux), named
# explicitly so that an event loop policy installed elsewhere cannot swap it.
FACTORIES = {
    "ferroloop": ferroloop.new_event_loop,
    "asyncio": asyncio.SelectorEventLoop,
}
EXPECTED_TYPE = {"ferroloop": ferroloop.Loop, "asyncio": asyncio.SelectorEventLoop}

DEFAULT_TIMEOUT = 60.0


def skipped_servers():
    return {s.strip() for s in os.environ.get("FERROLOOP_COMPAT_SKIP", "").split(",") if s.strip()}


def server_unavailable(name, why):
    """A server a test needs is missing: fail, unless the run explicitly opted out."""
    opted = skipped_servers()
    if name in opted or "all" in opted:
        pytest.skip(f"{name}: {why} (skipped: FERROLOOP_COMPAT_SKIP={os.environ['FERROLOOP_COMPAT_SKIP']})")
    pytest.fail(
        f"{name}: {why}. Install it (./dev test does: apt-get install postgresql redis-server) "
        f"or opt out with FERROLOOP_COMPAT_SKIP={name}",
        pytrace=False,
    )


# -- leak accounting ---------------------------------------------------------------------


def open_fds(collect=True):
    """The open fds of this process. By default after full garbage collections (several: an
    object freed in one pass may own, through native code, what the next pass frees), so
    that only fds that are really left behind count."""
    if collect:
        for _ in range(3):
            gc.collect()
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def fd_target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def zombie_children():
    """Our children that exited and were never reaped."""
    me = os.getpid()
    zombies = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        rest = stat[stat.rindex(")") + 2 :].split()
        if rest[0] == "Z" and int(rest[1]) == me:
            zombies.append(int(entry))
    return zombies


def pid_gone(pid):
    """True once a process no longer exists, zombie included (it was reaped)."""
    return not os.path.exists(f"/proc/{pid}")


# -- running a scenario on one loop --------------------------------------------------------


class Run:
    """Callable fixture object: runs a coroutine function on the parametrized loop."""

    def __init__(self, name):
        self.name = name
        self.factory = FACTORIES[name]
        self.errors = []  # contexts passed to the loop's exception handler

    def __call__(self, coro_fn, *args, timeout=DEFAULT_TIMEOUT):
        async def guarded():
            loop = asyncio.get_running_loop()
            assert type(loop) is EXPECTED_TYPE[self.name], f"running on {type(loop)!r}, not {self.name}"
            loop.set_exception_handler(self._handler)
            async with asyncio.timeout(timeout):
                return await coro_fn(*args)

        with asyncio.Runner(loop_factory=self.factory) as runner:
            return runner.run(guarded())

    def _handler(self, loop, context):
        self.errors.append(context)
        loop.default_exception_handler(context)

    def describe_errors(self):
        out = []
        for ctx in self.errors:
            exc = ctx.get("exception")
            out.append(f"{ctx.get('message')!r} exception={exc!r}")
        return "\n".join(out)


# -- TLS material -----------------------------------------------------------------------------


class TLS:
    def __init__(self):
        import trustme

        self.ca = trustme.CA()
        self.other_ca = trustme.CA()  # trusted by nobody: the "wrong certificate"
        self.cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self.wrong_cert = self.other_ca.issue_cert("localhost", "127.0.0.1")

    def server_context(self, wrong=False):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (self.wrong_cert if wrong else self.cert).configure_cert(ctx)
        return ctx

    def client_context(self):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        return ctx


# -- real servers -------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30.0, probe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if probe is None or probe(s):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _find_pg_bin(name):
    cands = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if cands:
        return cands[-1]
    return shutil.which(name)


class Postgres:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) on 127.0.0.1:<free port>."""

    def __init__(self):
        self.initdb = _find_pg_bin("initdb")
        self.pg_ctl = _find_pg_bin("pg_ctl")
        self.user = "postgres"
        self.database = "postgres"
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        # postgres refuses to run as root: run the server as the "postgres" system user
        self.run_as = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                self.run_as = None

    def _run(self, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        if self.run_as is not None:
            kw.update(
                user=self.run_as.pw_uid,
                group=self.run_as.pw_gid,
                extra_groups=[],
                env={**os.environ, "HOME": self.dir, "USER": "postgres"},
            )
        return subprocess.run(argv, cwd=self.dir, text=True, **kw)

    def start(self):
        if not (self.initdb and self.pg_ctl):
            server_unavailable("postgres", "PostgreSQL's initdb/pg_ctl not found (Debian package postgresql)")
        if os.geteuid() == 0 and self.run_as is None:
            server_unavailable(
                "postgres", "running as root and there is no 'postgres' user to run the server as"
            )
        self.dir = tempfile.mkdtemp(prefix="ferroloop-compat-pg-")
        if self.run_as is not None:
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)
        data = os.path.join(self.dir, "data")
        r = self._run(
            [
                self.initdb,
                "-D",
                data,
                "-U",
                self.user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            timeout=120,
        )
        if r.returncode != 0:
            pytest.fail(f"initdb failed:\n{r.stdout}", pytrace=False)
        # TLS for asyncpg's ssl= path (SSLRequest, then loop.start_tls): a throw-away CA
        import trustme

        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        crt, key = os.path.join(self.dir, "server.crt"), os.path.join(self.dir, "server.key")
        cert.cert_chain_pems[0].write_to_path(crt)
        cert.private_key_pem.write_to_path(key)
        os.chmod(key, 0o600)
        if self.run_as is not None:
            for path in (crt, key):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            opts = (
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=50 "
                f"-c ssl=on -c ssl_cert_file={crt} -c ssl_key_file={key}"
            )
            r = self._run(
                [
                    self.pg_ctl,
                    "-D",
                    data,
                    "-l",
                    os.path.join(self.dir, "log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    opts,
                    "start",
                ],
                timeout=90,
            )
            if r.returncode == 0 and wait_port(self.port, timeout=10):
                return self
            last = r.stdout + self.log()
        pytest.fail(f"PostgreSQL did not start:\n{last}", pytrace=False)

    def log(self):
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            self._run([self.pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "30", "stop"], timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    @property
    def socket_dir(self):
        """Where the server's Unix socket (.s.PGSQL.<port>) is."""
        return self.dir

    def client_ssl_context(self):
        import ssl

        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def dsn(self):
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


class Redis:
    """redis-server --port N --save '' --daemonize no, as our child, in a temp dir."""

    def __init__(self):
        self.binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
        )
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.dir = None

    @staticmethod
    def _ping(s):
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")

    def start(self):
        if not self.binary:
            server_unavailable("redis", "redis-server not found (Debian package redis-server)")
        self.dir = tempfile.mkdtemp(prefix="ferroloop-compat-redis-")
        self.unix_path = os.path.join(self.dir, "redis.sock")
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            with open(os.path.join(self.dir, "log"), "w") as log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        "--port",
                        str(self.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--dir",
                        self.dir,
                        "--unixsocket",
                        self.unix_path,
                        "--unixsocketperm",
                        "700",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                )
            if wait_port(self.port, self.proc, timeout=20, probe=self._ping):
                return self
            self._kill()
            with open(os.path.join(self.dir, "log")) as f:
                last = f.read()[-4000:]
        pytest.fail(f"redis-server did not start:\n{last}", pytrace=False)

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# -- marking a finding ----------------------------------------------------------------------


def ferroloop_xfail(reason, condition=True):
    """Parameters for ``arun`` with the ferroloop case marked xfail(strict=True)."""
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if condition else []
    return pytest.mark.parametrize("arun", [pytest.param("ferroloop", marks=marks), "asyncio"], indirect=True)
