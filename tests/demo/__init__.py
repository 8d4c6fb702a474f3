"""The demo's tests (python/ferroloop/demo). A package, so that its conftest does not
shadow tests/conftest.py for the modules that import from it."""
