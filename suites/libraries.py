"""The libraries whose own test suites `./dev suites` runs, at the versions the project pins.

Each entry: the PyPI name and pinned version (the wheel is installed from PyPI, the tests
come from that version's sdist), the test requirements (from the library's own test
requirement lists, minus linters, coverage and docs tools), how to run its pytest (from the
sdist root, so its own pytest configuration applies; `addopts` is replaced where it pulls
in coverage or xdist), and which servers it needs. `ci` is the named subset `./dev test`
runs (the loop-heavy modules); `full` is everything that exercises a loop.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    requirements: tuple
    full: tuple = ("tests",)
    ci: tuple = ("tests",)
    pytest_args: tuple = ()
    addopts: str | None = None  # replaces the library's own addopts when not None
    servers: tuple = ()  # "postgres", "redis"
    timeout: int = 60  # per test (pytest-timeout), seconds
    budget: int = 1800  # whole run of one loop, seconds
    ci_budget: int = 300
    has_tests_in_sdist: bool = True
    env: dict = field(default_factory=dict)

    @property
    def pin(self):
        return f"{self.name}=={self.version}"


_BASE = ("pytest>=8", "pytest-timeout>=2.4")

LIBRARIES = {
    lib.name: lib
    for lib in (
        Library(
            "uvicorn",
            "0.54.0",
            _BASE
            + (
                "uvicorn[standard]==0.54.0",
                "pytest-mock",
                "trustme",
                "cryptography",
                "httpx",
                "a2wsgi",
                "wsproto",
                "anyio",
                "httpx2",
                "zttp>=0.0.34",
                "pytest-codspeed",
            ),
            addopts="-rxXs",
            ci=("tests/protocols/test_http.py", "tests/test_server.py", "tests/test_main.py"),
        ),
        Library(
            "anyio",
            "4.16.0",
            _BASE
            + (
                "blockbuster>=1.5.29",
                "hypothesis>=4.18.2",
                "psutil>=5.9",
                "pytest-mock>=3.14",
                "trustme>=1.0.0",
                "truststore>=0.9.1",
                "uvloop>=0.22.1",
                "exceptiongroup",
            ),
            # The ignore: this machine has no IPv6, anyio's IPv6 tests fail on both loops and
            # leave their AF_INET6 sockets to the collector, whose ResourceWarning (an error under
            # anyio's filterwarnings) then fails whichever later test is running, on either loop.
            addopts="-rsfE --tb=short -p anyio -p no:asyncio -W 'ignore:unclosed <socket.socket:ResourceWarning'",
            ci=(
                "tests/test_subprocesses.py",
                "tests/test_sockets.py",
                "tests/streams",
                "tests/test_taskgroups.py",
                "tests/test_synchronization.py",
            ),
        ),
        Library(
            "aiohttp",
            "3.14.5",
            _BASE
            + (
                "aiodns>=3.3.0",
                "Brotli>=1.2",
                "backports.zstd",
                "blockbuster",
                "freezegun",
                "isal",
                "pkgconfig",
                "proxy.py>=2.4.4rc5",
                "pytest-mock",
                "pytest-xdist",
                "trustme",
                "zlib_ng",
                "gunicorn",
                "uvloop",
                "python-on-whales",
                "setuptools-git",
                "re-assert",
                "pytest-codspeed",
                "coverage",
            ),
            # Its addopts add xdist, coverage and doctests of the (installed) package.
            addopts='-rxXs --strict-markers -p no:cacheprovider -m "not dev_mode and not autobahn and not internal"'
            " --aiohttp-loop=pyloop",
            ci=(
                "tests/test_web_functional.py",
                "tests/test_client_functional.py",
                "tests/test_web_sendfile_functional.py",
                "tests/test_web_websocket_functional.py",
            ),
            full=("tests",),
            budget=3600,
            ci_budget=420,
        ),
        Library(
            "websockets",
            "17.4",
            _BASE,
            has_tests_in_sdist=False,  # its sdist ships no tests (checked: 0 test files)
        ),
        Library(
            "httpx",
            "0.28.1",
            _BASE
            + (
                "httpx[brotli,http2,socks,zstd,cli]==0.28.1",
                "uvicorn",
                "trustme",
                "chardet",
                "anyio",
                "cryptography",
                "trio",
            ),  # trio: its filterwarnings name it (trio tests are deselected)
            addopts="-rxXs",
            ci=("tests/client", "tests/test_asgi.py"),
        ),
        Library(
            "asyncpg",
            "0.32.0",
            _BASE + ("distro~=1.9.0",),
            addopts="-rxXs",
            # tests/ is a package: the default import mode would put the sdist root, with its
            # uncompiled asyncpg/, before the installed wheel.
            pytest_args=("--import-mode=importlib",),
            servers=("postgres",),
            ci=(
                "tests/test_execute.py",
                "tests/test_pool.py",
                "tests/test_cancellation.py",
                "tests/test_timeout.py",
                "tests/test_listeners.py",
                "tests/test_adversity.py",
            ),
        ),
        Library(
            "redis",
            "8.1.0",
            _BASE
            + (
                "pytest-asyncio>=0.24.0",
                "ujson>=4.2.0",
                "numpy>=1.24.0",
                "pybreaker>=1.4.0",
                "aiohttp>=3.9.0",
                "xxhash",
                "invoke",
                "packaging>=20.4",
                "redis-entraid",
                "cryptography",
            ),
            # All of tests/test_asyncio takes over an hour a loop here (many tests wait out
            # timeouts against modules a plain Redis lacks): the modules that drive the loop.
            full=(
                "tests/test_asyncio/test_connection.py",
                "tests/test_asyncio/test_connection_pool.py",
                "tests/test_asyncio/test_pubsub.py",
                "tests/test_asyncio/test_lock.py",
                "tests/test_asyncio/test_pipeline.py",
                "tests/test_asyncio/test_retry.py",
                "tests/test_asyncio/test_connect.py",
                "tests/test_asyncio/test_cwe_404.py",
                "tests/test_asyncio/test_monitor.py",
                "tests/test_asyncio/test_scripting.py",
                "tests/test_asyncio/test_encoding.py",
                "tests/test_asyncio/test_keyspace_notifications.py",
            ),
            ci=(
                "tests/test_asyncio/test_connection.py",
                "tests/test_asyncio/test_pubsub.py",
                "tests/test_asyncio/test_connection_pool.py",
                "tests/test_asyncio/test_lock.py",
            ),
            addopts="-rxXs",
            servers=("redis",),
        ),
    )
}
