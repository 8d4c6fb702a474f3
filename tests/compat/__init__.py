"""The real-library compatibility suite (a package, so that its conftest and helpers
cannot shadow the top-level tests/conftest.py module)."""
