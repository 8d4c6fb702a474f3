"""CPython's test.test_asyncio, run on a candidate loop (ferroloop, uvloop, stock asyncio).

`python -m conformance --help`; how it works and the expectations file: conformance/README.md.
"""
