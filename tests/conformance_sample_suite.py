"""A tiny unittest module for tests/test_conformance_harness.py: one test of each kind the
conformance harness must tell apart. Not collected by pytest (no test_ prefix)."""

import asyncio
import unittest


class Sample(unittest.TestCase):
    def test_a_passes_on_candidate(self):
        asyncio.run(asyncio.sleep(0))

    def test_b_fails_on_candidate(self):
        async def main():
            raise RuntimeError("boom")

        asyncio.run(main())

    def test_c_creates_but_never_runs(self):
        loop = asyncio.new_event_loop()
        loop.close()

    def test_d_hangs_on_candidate(self):
        loop = asyncio.new_event_loop()
        try:
            loop.run_forever()  # nothing stops it: the harness's time limit must
        finally:
            loop.close()

    def test_e_passes_after_the_hang(self):
        asyncio.run(asyncio.sleep(0))

    def test_f_stock_loop_only(self):
        loop = asyncio.SelectorEventLoop()
        try:
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()

    @unittest.skip("skipped on purpose")
    def test_g_skipped(self):
        pass
