"""Which test modules each subset runs."""

from .runner import all_modules

# Windows-only modules skip themselves entirely on Linux; left out of every subset.
WINDOWS_ONLY = {"test_windows_events", "test_windows_utils"}

# The CI subset: TODO after measuring.
CI = ()


def modules(subset):
    if subset == "full":
        return [m for m in all_modules() if m not in WINDOWS_ONLY]
    if subset == "ci":
        return list(CI)
    raise ValueError(f"unknown subset {subset!r}")
