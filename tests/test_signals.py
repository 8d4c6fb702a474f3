"""add_signal_handler / remove_signal_handler, and Ctrl-C interrupting a run."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from netutil import open_fds


def test_signal_handler_runs_on_loop(loop):
    got = []

    def on_usr1(tag):
        got.append((tag, threading.current_thread() is threading.main_thread()))
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_usr1, "usr1")
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, loop.stop)  # bound, in case the signal never arrives
    loop.run_forever()
    assert got == [("usr1", True)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_parked_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append(time.monotonic()), loop.stop()))
    loop.call_later(3600, print)
    sent = []

    def sender():
        time.sleep(0.1)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGUSR2)

    t = threading.Thread(target=sender)
    t.start()
    loop.run_forever()
    t.join()
    assert got and got[0] - sent[0] < 0.5
    loop.remove_signal_handler(signal.SIGUSR2)


def test_several_signals_each_reach_their_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, got.append, "usr2")
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR2)
    loop.call_later(0.2, loop.stop)
    loop.run_forever()
    assert got == ["usr1", "usr2"]


def test_bad_signal_arguments(loop):
    with pytest.raises(TypeError, match="sig must be an int, not 'x'"):
        loop.add_signal_handler("x", print)
    with pytest.raises(ValueError, match="invalid signal number 4242"):
        loop.add_signal_handler(4242, print)
    with pytest.raises(RuntimeError, match="sig 9 cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)

    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coro)


def test_signal_handler_from_other_thread_rejected(loop):
    errors = []

    def other():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "main thread" in errors[0]


def test_close_removes_handlers_and_fds(loop):
    before = open_fds()
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert open_fds() <= before


CTRL_C_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import ferroloop
    factory = {{"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.new_event_loop}}[sys.argv[1]]
    async def main():
        print("ready", flush=True)
        {body}
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    sys.exit(1)
""")


@pytest.mark.parametrize("loop_name", ["ferroloop", "asyncio"])
@pytest.mark.parametrize(
    "blocked_in, presses",
    [
        # parked in poll: the first Ctrl-C cancels the main task and the run ends
        ("await asyncio.sleep(3600)", 1),
        # a CPU-bound step: asyncio.Runner cancels on the first press, and raises
        # KeyboardInterrupt in the running code on the second
        ("await asyncio.sleep(0); sum(i for i in range(10**10))", 2),
    ],
)
def test_ctrl_c_interrupts_run(loop_name, blocked_in, presses):
    script = CTRL_C_SCRIPT.format(body=blocked_in)
    p = subprocess.Popen([sys.executable, "-c", script, loop_name], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        for _ in range(presses):
            time.sleep(0.2)
            p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
    finally:
        p.kill()
    assert "interrupted" in out
    assert p.returncode == 0
