"""Hypothesis profiles for the differential tester: `ci` (the default: a fixed,
derandomized budget that fits ./dev test), `long` (fresh randomness, for ./dev fuzz)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("FERROLOOP_FUZZ_EXAMPLES", "150")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=10**9,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("FERROLOOP_FUZZ_PROFILE", "ci"))
