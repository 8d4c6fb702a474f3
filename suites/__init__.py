"""The libraries' own test suites on ferroloop and on stock asyncio (`./dev suites`).

See suites/README.md; results in docs/compatibility.md.
"""
