"""Unix signal handlers for the loop (add_signal_handler / remove_signal_handler).

Python's C-level handler writes the signal number to a wakeup fd (`signal.set_wakeup_fd`);
the loop watches the other end of a socket pair and runs the registered handler as a
normal callback on the loop thread. This runs once per signal, so it is Python.
"""

import errno
import signal
import socket
from asyncio import coroutines
from asyncio.log import logger

from ._handles import iscoroutinefunction


def _noop_handler(signum, frame):
    """Installed with signal.signal() so Python writes the signal number to the wakeup fd."""


class SignalsMixin:
    """add_signal_handler / remove_signal_handler; its state is made by _init_signals and
    dropped by _close_signals, both called by Loop.

    Needs from the loop: _check_closed (Loop), add_reader, remove_reader, _add_callback
    (CoreLoop)."""

    def _init_signals(self):
        self._signal_handlers = {}
        self._ssock = self._csock = None

    def _close_signals(self):
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        if self._ssock is not None:
            self.remove_reader(self._ssock)
            self._ssock.close()
            self._csock.close()
            self._ssock = self._csock = None

    def _ensure_signal_socket(self):
        if self._ssock is None:
            self._ssock, self._csock = socket.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self.add_reader(self._ssock, self._read_signal_socket)

    def _read_signal_socket(self):
        while True:
            try:
                data = self._ssock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum:
                    self._handle_signal(signum)

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    @staticmethod
    def _check_signal(sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop when signal `sig` arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        self._ensure_signal_socket()
        try:
            # Raises ValueError outside the main thread: a loop in another thread cannot
            # take over signals.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))  # noqa: B904  (asyncio's raise: the error stays its context)
        from ._ferroloop import Handle

        self._signal_handlers[sig] = Handle(callback, args, self, None)
        try:
            signal.signal(sig, _noop_handler)
            # SA_RESTART: fewer EINTRs in the rest of the program.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")  # noqa: B904  (asyncio's raise: the OSError stays its context)
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler for `sig`; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")  # noqa: B904  (asyncio's raise: the OSError stays its context)
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True
