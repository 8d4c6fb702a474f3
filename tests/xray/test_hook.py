"""The one door between the loop and the x-ray (ferroloop/xray/hook.py): every loop holds
one hook, OFF until a recorder attaches; the hook hears of each task made in Python, each
executor job, each error context and the close, and OFF does what asyncio does."""

import asyncio

import ferroloop
from ferroloop import xray
from ferroloop.xray import hook


class Spy(hook.LoopHook):
    def __init__(self):
        self.events = []

    def task_created(self, task):
        self.events.append(("task", task.get_name()))

    def submit(self, loop, executor, func, args):
        self.events.append(("submit", func.__name__, args))
        return super().submit(loop, executor, func, args)

    def exception_context(self, context):
        self.events.append(("error", context["message"]))

    def loop_closing(self, loop):
        self.events.append(("closing", loop.is_closed()))


def test_a_new_loop_reports_to_off_and_keeps_the_native_create_task():
    loop = ferroloop.new_event_loop()
    try:
        assert loop._xray_hook is hook.OFF and loop._xray is None and not hook.attached(loop)
        assert loop.run_until_complete(loop.run_in_executor(None, pow, 2, 10)) == 1024
    finally:
        loop.close()


def test_an_attached_hook_hears_each_event_once():
    spy = Spy()
    loop = ferroloop.new_event_loop()
    try:
        hook.attach(loop, spy)
        assert hook.attached(loop) and loop._xray is spy

        async def main():
            await asyncio.get_running_loop().create_task(asyncio.sleep(0), name="child")
            return await asyncio.get_running_loop().run_in_executor(None, pow, 3, 2)

        assert loop.run_until_complete(loop.create_task(main(), name="main")) == 9
        loop.call_exception_handler({"message": "seen by the hook"})
        assert spy.events == [
            ("task", "main"),
            ("task", "child"),
            ("submit", "pow", (3, 2)),
            ("error", "seen by the hook"),
        ]
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        assert spy.events[-1] == ("closing", False)
    finally:
        hook.detach(loop)
        loop.close()
    assert loop._xray_hook is hook.OFF and loop._xray is None


def test_record_attaches_its_recorder_and_detaches_it_at_the_end():
    with xray.record(hooks=False) as rec:
        loop = ferroloop.new_event_loop()
        try:
            assert loop._xray_hook is rec and loop._xray is rec
        finally:
            loop.close()
    assert loop._xray_hook is hook.OFF and loop._xray is None
