"""ferroloop's flagship demo: the asyncio tutorial's real-world program - download a dozen
images, detect their edges - in its four variants (sequential, threads, async + processes,
with limits), on ferroloop and on stock asyncio, from an image server it starts on loopback.

    ./dev demo --help                    (from the repository: builds ferroloop, installs
                                         requirements.txt, runs this)
    python -m ferroloop_demo --help      (from examples/demo, with ferroloop and
                                         requirements.txt installed)

Modules: server (the image server), images (the generated photographs), edges (the
tutorial's edge detector and its vectorised twin), pipeline (the variants), executors
(process pool, threads, Dask), report (the tutorial's report, the table, the chart),
progress (rich bars), args/main (the command). Needs examples/demo/requirements.txt;
not part of the ferroloop package.
"""
