"""The live figures as Prometheus text, and blocking events as OpenTelemetry spans (with
opentelemetry-sdk's in-memory exporter, installed with the `compat` extra)."""

import asyncio
import re
import time

import pytest

import ferroloop
from ferroloop import xray


def _samples(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def test_metrics_lag_histogram_and_blocking_counts():
    async def main():
        xray.watch(blocking_threshold=0.05)
        try:
            for _ in range(50):
                await asyncio.sleep(0)
            time.sleep(0.12)  # a blocking call on the loop
            await asyncio.sleep(0)
            return xray.metrics()
        finally:
            xray.stop()

    text = ferroloop.run(main())
    assert "# TYPE ferroloop_loop_lag_seconds histogram" in text
    buckets = _samples(text, "ferroloop_loop_lag_seconds_bucket")
    counts = [v for k, v in buckets.items()]
    assert counts == sorted(counts) and counts[-1] >= 50  # cumulative, every step counted
    assert _samples(text, "ferroloop_loop_lag_seconds_count") == {'{loop="0"}': counts[-1]}
    assert _samples(text, "ferroloop_loop_iterations_total")['{loop="0"}'] >= 50
    assert _samples(text, "ferroloop_blocking_events_total")['{kind="blocking"}'] == 1
    assert _samples(text, "ferroloop_blocking_seconds_total")['{kind="blocking"}'] >= 0.12
    assert _samples(text, "ferroloop_loop_tasks")['{loop="0"}'] == 1


def test_blocking_event_is_an_opentelemetry_span():
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (the compat extra)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from ferroloop.xray import telemetry

    telemetry._tracer = provider.get_tracer("ferroloop.xray")  # not the global: other tests may set it
    try:

        def crunch():
            end = time.thread_time() + 0.1
            while time.thread_time() < end:
                pass

        async def main():
            xray.watch(blocking_threshold=0.05)
            try:
                await asyncio.sleep(0)
                time.sleep(0.1)  # blocking: the loop thread waits
                await asyncio.sleep(0)
                crunch()  # a slow callback: the loop thread computes
                await asyncio.sleep(0)
            finally:
                xray.stop()

        start = time.time_ns()
        ferroloop.run(main())
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["ferroloop.loop.blocked", "ferroloop.loop.slow_callback"]
        blocked, slow = spans
        assert blocked.attributes["code.function"] == "time.sleep"
        assert blocked.attributes["code.location"] == f"test_telemetry.py:{_line('time.sleep(0.1)')}"
        assert slow.attributes["code.location"].startswith("test_telemetry.py:")
        assert re.fullmatch(
            r"test_blocking_event_is_an_opentelemetry_span\.<locals>\.main#\d+",
            blocked.attributes["ferroloop.task"],
        )
        assert start <= blocked.start_time < blocked.end_time <= time.time_ns()
        assert blocked.end_time - blocked.start_time >= 0.1e9
    finally:
        telemetry._tracer = None


def _line(text):
    import inspect

    src, first = inspect.getsourcelines(test_blocking_event_is_an_opentelemetry_span)
    return first + next(i for i, line in enumerate(src) if text in line and "blocking" in line)
