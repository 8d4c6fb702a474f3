"""Type stubs for ferroloop's public API."""

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._ferroloop import CoreLoop
from ._ferroloop import Handle as Handle
from ._ferroloop import TimerHandle as TimerHandle

_T = TypeVar("_T")

__version__: str
__all__: tuple[str, ...]

class Loop(CoreLoop, asyncio.AbstractEventLoop):
    def __init__(self) -> None: ...
    def set_debug(self, enabled: bool) -> None: ...
    def set_default_executor(self, executor: concurrent.futures.Executor) -> None: ...

class EventLoopPolicy(asyncio.AbstractEventLoopPolicy):
    def get_event_loop(self) -> asyncio.AbstractEventLoop: ...
    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None: ...
    def new_event_loop(self) -> Loop: ...

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(
    main: Coroutine[Any, Any, _T],
    *,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **run_kwargs: Any,
) -> _T: ...
