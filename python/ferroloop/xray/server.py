"""The live monitor's socket: a Unix socket, mode 0600, that answers only its own user.

Protocol (version 1): newline-delimited JSON. A request is one line,
`{"v": 1, "cmd": "hello" | "snapshot" | "metrics"}`; the answer is one line,
`{"v": 1, "ok": true, ...}` or `{"v": 1, "ok": false, "error": "..."}`. A connection may
send many requests (top does). Nothing listens on TCP.

Costs the loop nothing while nobody is connected: a thread of ours waits in accept()
(without the GIL); a request asks the loop for a snapshot through call_soon_threadsafe.
A client that vanishes mid-answer costs its connection thread an exception, nothing more.
"""

import errno
import json
import os
import socket
import stat
import struct
import sys
import threading

PROTOCOL = 1
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 16


def runtime_dir():
    """Where per-PID sockets go for "auto": $XDG_RUNTIME_DIR/ferroloop, else
    /tmp/ferroloop-UID (made 0700, and refused if another user owns it)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = os.path.join(base, "ferroloop") if base and os.path.isdir(base) else f"/tmp/ferroloop-{os.geteuid()}"
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{d} is not a directory of this user")
    return d


def socket_path(value, pid=None):
    """The socket a FERROLOOP_XRAY_SOCKET value (or serve()'s argument) names for `pid`:
    "auto" -> runtime_dir()/PID.sock; an existing directory (or a path ending in "/") ->
    DIR/ferroloop-PID.sock; anything else is the socket's own path."""
    pid = os.getpid() if pid is None else pid
    value = os.fspath(value)
    if value == "auto":
        return os.path.join(runtime_dir(), f"{pid}.sock")
    if value.endswith(os.sep) or os.path.isdir(value):
        return os.path.join(value, f"ferroloop-{pid}.sock")
    return value


def peer_uid(conn):
    """The connecting process's uid (SO_PEERCRED on Linux, getpeereid elsewhere)."""
    if hasattr(socket, "SO_PEERCRED"):
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return uid
    return (
        os.geteuid() if not hasattr(os, "getpeereid") else os.getpeereid(conn.fileno())[0]
    )  # pragma: no cover


class Server:
    def __init__(self, path, monitor):
        self.path = os.path.abspath(path)
        self.monitor = monitor
        self.uid = os.geteuid()
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closed = False
        self._pid = os.getpid()  # a forked child inherits atexit: only the owner unlinks
        self.sock = self._bind()
        self._inode = os.stat(self.path).st_ino
        self._thread = threading.Thread(target=self._accept_loop, name="ferroloop-xray-monitor", daemon=True)
        self._thread.start()
        import atexit

        atexit.register(self.close)

    def _bind(self):
        if os.path.exists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
                os.unlink(self.path)  # stale: its process is gone
            else:
                raise FileExistsError(f"{self.path} is in use by a live process")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no window where others could connect
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        return sock

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            if os.getpid() == self._pid and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept_loop(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self._closed:
                    return
                continue
            if not self._clients.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(
                target=self._serve_client, args=(conn,), name="ferroloop-xray-client", daemon=True
            ).start()

    def _serve_client(self, conn):
        try:
            with conn:
                if peer_uid(conn) != self.uid:
                    self._send(
                        conn, {"v": PROTOCOL, "ok": False, "error": "refused: not this process's user"}
                    )
                    return
                buf = b""
                while not self._closed:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self._send(conn, self._answer(line))
                    if len(buf) > MAX_REQUEST:
                        self._send(conn, {"v": PROTOCOL, "ok": False, "error": "request too long"})
                        return
        except OSError:
            pass  # the client went away (mid-answer included): only its connection ends
        except Exception as exc:  # never into the program: report and drop the client
            print(f"ferroloop x-ray monitor: {exc!r}", file=sys.stderr)
        finally:
            self._clients.release()

    def _send(self, conn, answer):
        conn.sendall(json.dumps(answer, default=repr).encode() + b"\n")

    def _answer(self, line):
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            return {"v": PROTOCOL, "ok": False, "error": f"bad request: {exc}"}
        if req.get("v", PROTOCOL) != PROTOCOL:
            return {"v": PROTOCOL, "ok": False, "error": f"unsupported protocol version {req.get('v')!r}"}
        cmd = req.get("cmd")
        if cmd == "hello":
            from .. import __version__

            return {
                "v": PROTOCOL,
                "ok": True,
                "pid": os.getpid(),
                "argv": sys.argv,
                "ferroloop": __version__,
                "python": sys.version.split()[0],
                "commands": ["hello", "snapshot", "metrics"],
            }
        if cmd == "snapshot":
            timeout = float(req.get("timeout", 0.25))
            return {"v": PROTOCOL, "ok": True, **self.monitor.snapshot(timeout=min(max(timeout, 0.01), 5.0))}
        if cmd == "metrics":
            from .telemetry import metrics

            return {"v": PROTOCOL, "ok": True, "text": metrics()}
        return {"v": PROTOCOL, "ok": False, "error": f"unknown command {cmd!r}"}
