"""Which test modules each subset runs.

full: every module of the interpreter's test.test_asyncio (Windows-only ones aside).
ci:   the modules in which a test reaches the candidate loop through asyncio's public API.
      The others build their loops directly (SelectorEventLoop(), test_utils.TestLoop, a
      mocked BaseEventLoop), so none of their tests can count or fail the gate: leaving them
      out of CI loses nothing. `check` on a full run says so if that ever stops being true.
"""

from .runner import all_modules

WINDOWS_ONLY = {"test_windows_events", "test_windows_utils"}

CI = (
    "test_base_events",
    "test_context",
    "test_events",
    "test_futures2",
    "test_locks",
    "test_queues",
    "test_ssl",
    "test_sslproto",
    "test_streams",
    "test_subprocess",
    "test_taskgroups",
    "test_tasks",
    "test_threads",
    "test_timeouts",
    "test_unix_events",
    "test_waitfor",
    # Reach the candidate from 3.12 / 3.13 on (test_server has no such test on 3.11).
    "test_eager_task_factory",
    "test_server",
    "test_staggered",
)


def modules(subset):
    present = [m for m in all_modules() if m not in WINDOWS_ONLY]
    if subset == "full":
        return present
    if subset == "ci":
        return [m for m in present if m in CI]
    raise ValueError(f"unknown subset {subset!r}")


def outside_ci(results):
    """Modules outside the ci subset where a test reached the candidate loop in this run."""
    return sorted(
        {
            test.split(".")[0]
            for test, rec in results["tests"].items()
            if (rec.get("created") or rec.get("ran")) and test.split(".")[0] not in CI
        }
    )
