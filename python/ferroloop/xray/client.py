"""Talking to a live monitor: finding its socket from a PID, asking, reading the answer."""

import json
import os
import socket
import time

from .server import PROTOCOL, socket_path


class MonitorError(Exception):
    pass


def _env_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return {}
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def find_socket(target):
    """TARGET is a socket path, or a PID: its socket is where its FERROLOOP_XRAY_SOCKET
    (read from /proc/PID/environ) puts it for that PID, else the "auto" place."""
    target = os.fspath(target)
    if not target.isdigit():
        return target
    pid = int(target)
    candidates = []
    env = _env_of(pid)
    value = env.get("FERROLOOP_XRAY_SOCKET")
    if value and value != "auto":
        candidates.append(socket_path(value, pid))
    # "auto", as the target process resolved it: its XDG_RUNTIME_DIR, else /tmp/ferroloop-UID
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "ferroloop", f"{pid}.sock"))
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        uid = os.geteuid()
    candidates.append(f"/tmp/ferroloop-{uid}/{pid}.sock")
    if os.environ.get("XDG_RUNTIME_DIR"):  # ours, looked at without making anything
        candidates.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "ferroloop", f"{pid}.sock"))
    candidates = list(dict.fromkeys(candidates))
    for path in candidates:
        if os.path.exists(path):
            return path
    if not os.path.exists(f"/proc/{pid}"):
        raise MonitorError(f"no process {pid}")
    raise MonitorError(
        f"process {pid} has no ferroloop monitor socket (looked at: {', '.join(candidates)}); "
        "start it with FERROLOOP_XRAY_SOCKET=auto or call ferroloop.xray.serve()"
    )


class Client:
    def __init__(self, target, timeout=5.0):
        self.path = find_socket(target)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(self.path)
                break
            except BlockingIOError:  # the listen backlog is full: the monitor is busy
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise MonitorError(f"{self.path}: the monitor is too busy to accept") from None
                time.sleep(0.01)
            except OSError as exc:
                self.sock.close()
                raise MonitorError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        self._buf = b""

    def ask(self, cmd, **args):
        self.sock.sendall(json.dumps({"v": PROTOCOL, "cmd": cmd, **args}).encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise MonitorError("the monitor closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise MonitorError(answer.get("error", "refused"))
        return answer

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def snapshot(target, timeout=0.25):
    with Client(target) as c:
        return c.ask("snapshot", timeout=timeout)
