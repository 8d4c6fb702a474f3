"""Progress bars for one run: downloads, then processing (rich, on stderr).

Disabled, it costs nothing and prints nothing (tests, pipes, --no-progress)."""

from __future__ import annotations


class Bars:
    def __init__(self, enabled: bool, total: int, title: str):
        self.enabled, self.total, self.title = enabled, total, title
        self._progress = None
        self._download = self._process = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(bar_width=40),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                refresh_per_second=8,
            )
            self._progress.start()
            self._download = self._progress.add_task(f"{self.title}: download", total=self.total)
        return self

    def downloaded(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._download, n)

    def start_processing(self, total: int) -> None:
        if self._progress is not None:
            self._process = self._progress.add_task(f"{self.title}: edges", total=total)

    def processed(self, n: int = 1) -> None:
        if self._progress is not None and self._process is not None:
            self._progress.advance(self._process, n)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
