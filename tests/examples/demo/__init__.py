"""The demo's tests (examples/demo/ferroloop_demo). A package, so that its conftest does not
shadow tests/conftest.py for the modules that import from it."""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[3] / "examples" / "demo"  # ferroloop_demo's parent
