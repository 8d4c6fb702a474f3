"""The live monitor on a real aiohttp server: `ps` lists the in-flight requests with the
handler and the line each waits at; `top`, in a real terminal (tmux), shows a blocking
call with its line while it blocks. Every wait is a poll on a real condition with a
deadline."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

APP = textwrap.dedent("""
    import asyncio, sys, time
    from aiohttp import web

    release = None

    async def slow_handler(request):
        await release.wait()  # SLOW_LINE
        return web.Response(text="slow")

    async def block_handler(request):
        time.sleep(1.5)  # BLOCK_LINE
        return web.Response(text="blocked")

    async def ok_handler(request):
        return web.Response(text="ok")

    async def main():
        global release
        release = asyncio.Event()
        app = web.Application()
        app.add_routes([web.get("/slow", slow_handler), web.get("/block", block_handler), web.get("/", ok_handler)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print("ready", port, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
""")


def _line_of(marker):
    return next(i for i, line in enumerate(APP.splitlines(), 1) if marker in line)


def _ferroloop(*args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "ferroloop", *args], capture_output=True, text=True, timeout=timeout
    )


def _poll(check, deadline, what):
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)  # the polling period of a wait on a real condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("aiohttp")
    (tmp_path / "app.py").write_text(APP)
    sock = str(tmp_path / "mon.sock")
    env = dict(os.environ, FERROLOOP_XRAY_SOCKET=sock)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferroloop", "run", str(tmp_path / "app.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, int(line.split()[1]), sock
    finally:
        proc.kill()
        proc.wait(10)


def _get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def test_ps_lists_in_flight_requests_then_top_shows_the_block(server):
    proc, port, sock = server
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    # load: a burst of quick requests, then eight held in the slow handler
    for _ in range(20):
        with _get(port, "/") as s:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    held = [_get(port, "/slow") for _ in range(8)]
    slow_at = f"app.py:{_line_of('SLOW_LINE')} in slow_handler"

    def listed():
        p = _ferroloop("ps", sock)
        assert p.returncode == 0, p.stderr
        rows = [line for line in p.stdout.splitlines() if slow_at in line]
        return p.stdout if len(rows) == 8 else None

    out = _poll(listed, time.monotonic() + 30, "8 requests in slow_handler in ps")
    rows = [line for line in out.splitlines() if slow_at in line]
    assert all("RequestHandler._handle_request#" in r and "event" in r for r in rows), rows
    # by PID too: the socket is found from the process's environment
    assert slow_at in _ferroloop("ps", str(proc.pid)).stdout
    tree = _ferroloop("pstree", sock).stdout
    assert tree.count("slow_handler") == 8

    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (Debian's tmux)")
    session = f"ferroloop-top-{uuid.uuid4().hex[:8]}"
    env_cmd = f"{sys.executable} -m ferroloop top --interval 0.2 {sock}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", env_cmd], check=True)
    try:

        def pane():
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout

        _poll(
            lambda: "ferroloop top" in pane() and "slow_handler" in pane(),
            time.monotonic() + 20,
            "top's first frame",
        )
        block_at = f"time.sleep at app.py:{_line_of('BLOCK_LINE')}"
        blocker = _get(port, "/block")
        start = time.monotonic()
        screen = _poll(lambda: block_at in pane() and pane(), start + 2.0, f"{block_at!r} in top within 2 s")
        assert re.search(r"BLOCKED NOW|\[blocking\]", screen)
        assert blocker.recv(4096).startswith(b"HTTP/1.1 200")
        blocker.close()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        for s in held:
            s.close()


OTHER_USER = "ferroloop-xray"


def _other_user():
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a second user to connect as")
    if not shutil.which("runuser"):
        pytest.skip("runuser is not installed")
    if subprocess.run(["id", OTHER_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
            check=True,
            capture_output=True,
        )
    return OTHER_USER


CONNECT = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        print("connect-refused", e.errno); sys.exit(0)
    try:
        s.sendall(b'{"v": 1, "cmd": "snapshot"}\\n')
    except BrokenPipeError:
        pass  # refused before the request was read: the refusal is still there to read
    data = b""
    while b"\\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print("answer", data.decode().strip())
""")


def _system_python():
    # the other user cannot run the venv's interpreter under /root: a system one runs the client
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    pytest.skip("no system python3 the second user can run")


def test_socket_is_0600_and_other_users_are_refused():
    import asyncio
    import tempfile

    import ferroloop
    from ferroloop import xray

    user = _other_user()
    python = _system_python()
    # a directory the other user may enter (pytest's own tmp dirs are root's only): the
    # socket's mode alone must keep them out
    public = tempfile.mkdtemp(prefix="ferroloop-xray-", dir="/tmp")
    os.chmod(public, 0o755)
    path = os.path.join(public, "mon.sock")

    def connect_as_other():
        p = subprocess.run(
            ["runuser", "-u", user, "--", python, "-c", CONNECT, path],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    async def main():
        xray.serve(path)
        try:
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
            # the file's mode keeps the other user out
            out = await asyncio.to_thread(connect_as_other)
            assert out == f"connect-refused {13}", out  # EACCES
            # and if the mode were opened up, the peer's uid (SO_PEERCRED) still is
            os.chmod(path, 0o666)
            out = await asyncio.to_thread(connect_as_other)
            assert out.startswith("answer "), out
            answer = json.loads(out.removeprefix("answer "))
            assert answer["ok"] is False and "refused" in answer["error"] and "loops" not in answer
            # the owner is answered
            from ferroloop.xray.client import snapshot

            snap = await asyncio.to_thread(snapshot, path)
            assert snap["ok"] and snap["pid"] == os.getpid()
        finally:
            xray.stop()
        assert not os.path.exists(path)

    try:
        ferroloop.run(main())
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_vanishing_clients_and_bad_requests_do_not_disturb_the_program(tmp_path):
    import asyncio

    import ferroloop
    from ferroloop import xray
    from ferroloop.xray.client import Client, MonitorError

    path = str(tmp_path / "mon.sock")

    async def ticker(n):
        for _ in range(n):
            await asyncio.sleep(0.001)
        return n

    def abuse():
        for _ in range(20):  # ask for a snapshot and leave before the answer
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b'{"v": 1, "cmd": "snapshot"}\n' * 5)
            s.close()
        with Client(path) as c:
            with pytest.raises(MonitorError, match="unsupported protocol version 2"):
                c.ask("snapshot", v=2)
            c.sock.sendall(b"not json\n")
            assert b"bad request" in c.sock.recv(65536)
            with pytest.raises(MonitorError, match="unknown command"):
                c.ask("rm -rf")
            hello = c.ask("hello")
            assert hello["v"] == 1 and "snapshot" in hello["commands"]
            return c.ask("snapshot")

    async def main():
        xray.serve(path)
        try:
            work = asyncio.create_task(ticker(200), name="ticker")
            snap = await asyncio.to_thread(abuse)
            assert await work == 200
            names = [t["name"] for t in snap["loops"][0]["tasks"]]
            assert "ticker" in names  # the program's own name kept
            assert any(
                n.startswith(
                    "test_vanishing_clients_and_bad_requests_do_not_disturb_the_program.<locals>.main#"
                )
                for n in names
            )
        finally:
            xray.stop()

    ferroloop.run(main())


def test_a_forked_child_serves_on_its_own_socket_and_leaves_the_parents(tmp_path):
    # FERROLOOP_XRAY_SOCKET names a directory: one socket per process, a forked worker too
    script = tmp_path / "forks.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, sys
        import ferroloop

        async def main():
            await asyncio.sleep(0)

        ferroloop.run(main())  # the parent's first loop: its monitor starts
        pid = os.fork()
        if pid == 0:
            ferroloop.run(main())  # the child's first loop: its own socket
            print("child", os.getpid(), os.path.exists(sys.argv[1] + f"/ferroloop-{os.getpid()}.sock"), flush=True)
            sys.exit(0)  # atexit runs: the parent's server (inherited) must not unlink its socket
        os.waitpid(pid, 0)
        print("parent", os.path.exists(sys.argv[1] + f"/ferroloop-{os.getpid()}.sock"), flush=True)
    """)
    )
    env = dict(os.environ, FERROLOOP_XRAY_SOCKET=str(tmp_path) + "/")
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0] == "child" and lines[2] == "True"  # served while it ran
    assert lines[3:] == ["parent", "True"]  # the child's exit did not remove the parent's socket
    assert not list(tmp_path.glob("*.sock"))  # each removed its own at exit


def test_snapshot_counts_each_tasks_steps_and_names_what_it_waits_on():
    import asyncio

    import ferroloop
    from ferroloop import xray
    from ferroloop.xray.live import watch

    async def stepper(n):
        for _ in range(n):
            await asyncio.sleep(0)  # one step each
        await asyncio.sleep(30)

    async def locked(lock):
        async with lock:
            pass

    async def queued(q):
        await q.get()

    async def main():
        mon = watch()
        try:
            lock, q = asyncio.Lock(), asyncio.Queue()
            await lock.acquire()
            tasks = [
                asyncio.create_task(stepper(5), name="five"),
                asyncio.create_task(locked(lock)),
                asyncio.create_task(queued(q)),
                asyncio.create_task(asyncio.to_thread(__import__("time").sleep, 0.5), name="in-thread"),
            ]
            for _ in range(10):
                await asyncio.sleep(0)
            snap = await asyncio.to_thread(mon.snapshot)
            for t in tasks:
                t.cancel()
            lock.release()
            await asyncio.gather(*tasks, return_exceptions=True)
            return snap
        finally:
            xray.stop()

    snap = ferroloop.run(main())
    tasks = {t["name"]: t for t in snap["loops"][0]["tasks"]}
    five = tasks["five"]
    assert five["steps"] == 6 and five["age"] is not None and five["waits_on"] == "timer"
    assert five["where"].startswith("test_live.py:") and five["where_func"].endswith("<locals>.stepper")
    assert [c["name"] for c in five["chain"]][-2:] == [
        "test_snapshot_counts_each_tasks_steps_and_names_what_it_waits_on.<locals>.stepper",
        "sleep",
    ]
    by_coro = {t["coro"].rsplit(".", 1)[-1]: t for t in tasks.values()}
    assert by_coro["locked"]["waits_on"] == "lock"
    assert by_coro["queued"]["waits_on"] == "queue"
    assert tasks["in-thread"]["waits_on"] == "executor"
    main_task = by_coro["main"]
    assert main_task["waits_on"] == "executor"  # main awaits mon.snapshot in a thread


def test_auto_socket_is_found_by_pid(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    script = tmp_path / "idle.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio

        async def idle_forever():
            print("ready", flush=True)
            await asyncio.sleep(60)

        asyncio.run(idle_forever())
    """)
    )
    env = dict(os.environ, FERROLOOP_XRAY_SOCKET="auto", XDG_RUNTIME_DIR=str(runtime))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferroloop", "run", str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        sock = runtime / "ferroloop" / f"{proc.pid}.sock"
        assert oct(os.stat(runtime / "ferroloop").st_mode & 0o777) == "0o700"
        # the client need not share the server's XDG_RUNTIME_DIR: it reads the target's
        client_env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        p = subprocess.run(
            [sys.executable, "-m", "ferroloop", "ps", str(proc.pid)],
            capture_output=True,
            text=True,
            env=client_env,
            timeout=30,
        )
        assert p.returncode == 0, p.stderr
        assert "idle_forever#1" in p.stdout and "in idle_forever" in p.stdout
        assert sock.exists()
    finally:
        proc.terminate()
        proc.wait(10)
