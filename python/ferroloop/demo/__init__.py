"""ferroloop's flagship demo: the asyncio tutorial's real-world program - download a dozen
images, detect their edges - in its four variants (sequential, threads, async + processes,
with limits), on ferroloop and on stock asyncio, from an image server it starts on loopback.

    python -m ferroloop demo --help

Modules: server (the image server), images (the generated photographs), edges (the
tutorial's edge detector and its vectorised twin), pipeline (the variants), executors
(process pool, threads, Dask), report (the tutorial's report, the table, the chart),
progress (rich bars), args/main (the command). Needs the `demo` extra:
pip install 'ferroloop[demo]'. Nothing here is imported by `import ferroloop`.
"""
