"""A progress bar on stderr (rich, which ships with textual); plain periodic lines when stderr is not a tty."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn


class Progress:
    """`update(n, note)` sets the position; `close()` ends the bar."""

    def __init__(self, total: int, desc: str, initial: int = 0, every_s: float = 30.0):
        self.total, self.desc, self.every_s = total, desc, every_s
        self._last = 0.0
        self._console = Console(stderr=True)
        self._bar = None
        if self._console.is_terminal:
            self._bar = RichProgress(TextColumn(f"[bold]{desc}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                                     console=self._console, transient=False)
            self._task = self._bar.add_task(desc, total=total, completed=initial, note="")
            self._bar.start()

    def update(self, n: int, note: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=n, note=note)
        elif time.monotonic() - self._last >= self.every_s or n == self.total:
            self._last = time.monotonic()
            print(f"{self.desc} {n}/{self.total} {note}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
