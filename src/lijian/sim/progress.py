"""Rich progress bars for the simulator (the runner itself only knows ``Progress``).

On a terminal, live bars. Anywhere else (a log file, a pipe, CI) a live display prints
nothing until it stops, so a run of minutes would look hung: there, each bar is a plain
line on stderr when it starts and then at most every ``LINE_EVERY_S`` (stderr: the
report's summary stays alone on stdout, and ``lijian simulate > log`` still shows the
progress where it was started).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LINE_EVERY_S = 5.0


class RichProgress:
    """One bar per label; labels of the form ``"day 2025-02-12"`` share one bar that is
    reset each day, so a 17-day campaign shows two bars (campaign, today), not 18."""

    def __init__(
        self,
        console: Console,
        clock: Callable[[], float] = time.monotonic,
        line_file: TextIO | None = None,
    ) -> None:
        self.lines = not console.is_terminal
        self._line_file = line_file  # None: sys.stderr at the time of writing
        self._clock = clock
        self._last_line_s = -LINE_EVERY_S
        self.bars = Progress(
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        if not self.lines:
            self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.lines:
            self.bars.stop()

    def start(self, label: str, total: int) -> None:
        key = label.split(maxsplit=1)[0]
        task = self.tasks.get(key)
        if task is None:
            self.tasks[key] = self.bars.add_task(label, total=total)
        else:
            self.bars.reset(task, total=total, description=label)
        if self.lines:
            self._line(self.tasks[key], force=True)

    def advance(self, label: str, n: int) -> None:
        task = self.tasks.get(label.split(maxsplit=1)[0])
        if task is not None and n:
            self.bars.advance(task, n)
            if self.lines:
                self._line(task)

    def _line(self, task_id: TaskID, force: bool = False) -> None:
        now_s = self._clock()
        if not force and now_s - self._last_line_s < LINE_EVERY_S:
            return
        self._last_line_s = now_s
        task = self.bars.tasks[task_id]
        done = int(task.completed)
        if task.total:
            line = f"  {task.description}: {done:,}/{int(task.total):,} ({done / task.total:.0%})"
        else:
            line = f"  {task.description}: {done:,}"
        out = self._line_file or sys.stderr
        out.write(line + "\n")
        out.flush()  # a pipe or a file is block-buffered: the line is for now

    def note(self, text: str) -> None:
        self.bars.console.print(f"  {text}")
