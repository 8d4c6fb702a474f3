"""docs/integrations.md's recipes, each run for real: the server program starts on loopback,
the test makes a real request, and the answer says which loop served it (apps.py answers
with the running loop's module). Then the server is stopped as its users stop it (SIGTERM)
and must exit cleanly."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FERROLOOP = "ferroloop._loop"
STARTUP_TIMEOUT = 60.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc, port):
    """Until the server accepts a connection (or has died, or the deadline passed)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the server exited with {proc.returncode} before listening:\n{out}\n{err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"nothing listened on port {port} within {STARTUP_TIMEOUT} s:\n{proc.communicate()[1]}")


class Server:
    def __init__(self, args, port):
        env = {**os.environ, "PYTHONPATH": HERE, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONWARNINGS", None)
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=HERE,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def __enter__(self):
        _wait_listening(self.proc, self.port)
        return self

    def get(self, path="/"):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return r.status, r.read().decode()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.out, self.err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()
            pytest.fail(f"the server did not stop on SIGTERM:\n{self.err}")
        return False


# uvicorn ends a graceful shutdown by raising the signal it caught again (as on stock asyncio)
UVICORN_EXIT = (0, -signal.SIGTERM)


def _serve_and_check(args, port, exit_codes=(0,)):
    with Server(args, port) as server:
        status, body = server.get()
    assert (status, body) == (200, FERROLOOP), server.err
    assert server.proc.returncode in exit_codes, server.err
    assert "Traceback" not in server.err, server.err
    return server


# -- uvicorn ----------------------------------------------------------------------------------


def _uvicorn_command_line(app):
    port = _free_port()
    _serve_and_check(
        [
            "-m",
            "uvicorn",
            app,
            "--loop",
            "ferroloop:new_event_loop",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port,
        UVICORN_EXIT,
    )


def test_uvicorn_command_line_loop_option():
    pytest.importorskip("uvicorn")
    _uvicorn_command_line("apps:asgi_app")


def test_uvicorn_from_code():
    pytest.importorskip("uvicorn")
    port = _free_port()
    program = textwrap.dedent(f"""
        import uvicorn
        uvicorn.run("apps:asgi_app", host="127.0.0.1", port={port}, loop="ferroloop:new_event_loop")
    """)
    _serve_and_check(["-c", program], port, UVICORN_EXIT)


def test_fastapi_on_uvicorn():
    pytest.importorskip("fastapi")
    _uvicorn_command_line("apps:fastapi_app")


# -- hypercorn --------------------------------------------------------------------------------


def test_hypercorn_serve_with_loop_factory():
    pytest.importorskip("hypercorn")
    port = _free_port()
    program = textwrap.dedent(f"""
        import asyncio, sys
        import ferroloop
        from hypercorn.asyncio import serve
        from hypercorn.config import Config
        from apps import asgi_app

        config = Config()
        config.bind = ["127.0.0.1:{port}"]
        if sys.version_info >= (3, 12):
            asyncio.run(serve(asgi_app, config), loop_factory=ferroloop.new_event_loop)
        else:
            ferroloop.run(serve(asgi_app, config))
    """)
    _serve_and_check(["-c", program], port)


# -- aiohttp ----------------------------------------------------------------------------------


def test_aiohttp_run_app_with_loop():
    pytest.importorskip("aiohttp")
    port = _free_port()
    program = textwrap.dedent(f"""
        import ferroloop
        from aiohttp import web
        from apps import aiohttp_app

        web.run_app(aiohttp_app(), host="127.0.0.1", port={port}, loop=ferroloop.new_event_loop())
    """)
    _serve_and_check(["-c", program], port)


# -- gunicorn ---------------------------------------------------------------------------------


def test_gunicorn_with_uvicorn_worker():
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn")
    port = _free_port()
    server = _serve_and_check(
        [
            "-m",
            "gunicorn",
            "apps:asgi_app",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "ferroloop.integrations.gunicorn.UvicornWorker",
        ],
        port,
    )
    assert "DeprecationWarning" not in server.err


def test_gunicorn_with_aiohttp_worker():
    pytest.importorskip("gunicorn")
    pytest.importorskip("aiohttp")
    port = _free_port()
    server = _serve_and_check(
        [
            "-m",
            "gunicorn",
            "apps:aiohttp_app_factory",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "ferroloop.integrations.gunicorn.AiohttpWorker",
        ],
        port,
    )
    assert "DeprecationWarning" not in server.err  # no policy was set on the way


def test_worker_module_imports_without_the_frameworks():
    # The worker classes are built on first use; the module itself needs neither framework.
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys
        sys.modules['uvicorn'] = sys.modules['aiohttp'] = sys.modules['uvicorn_worker'] = None
        import ferroloop.integrations.gunicorn as g
        try:
            g.AiohttpWorker
        except ImportError:
            print('lazy')
    """),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.stdout.strip() == "lazy", p.stderr


# -- anyio ------------------------------------------------------------------------------------


def test_anyio_run_with_loop_factory():
    pytest.importorskip("anyio")
    port = _free_port()
    program = textwrap.dedent(f"""
        import asyncio
        import anyio
        import ferroloop

        async def main():
            done = anyio.Event()

            async def handle(client):
                async with client:
                    try:
                        await client.receive()
                    except anyio.EndOfStream:
                        return  # the test's probe: is anything listening yet?
                    await client.send(type(asyncio.get_running_loop()).__module__.encode())
                done.set()

            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port={port})
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                await done.wait()
                tg.cancel_scope.cancel()

        anyio.run(main, backend="asyncio", backend_options={{"loop_factory": ferroloop.new_event_loop}})
    """)
    server = Server(["-c", program], port)
    with server:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"which loop?")
            answer = s.recv(100)
        server.proc.wait(timeout=30)  # it serves one client, then ends by itself
    assert answer.decode() == FERROLOOP
    assert server.proc.returncode == 0, server.err
