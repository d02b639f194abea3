"""Rich progress bars for the simulator (the runner itself only knows ``Progress``)."""

from __future__ import annotations

from types import TracebackType

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


class RichProgress:
    """One bar per label; labels of the form ``"day 2025-02-12"`` share one bar that is
    reset each day, so a 17-day campaign shows two bars (campaign, today), not 18."""

    def __init__(self, console: Console) -> None:
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
        self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bars.stop()

    def start(self, label: str, total: int) -> None:
        key = label.split(maxsplit=1)[0]
        task = self.tasks.get(key)
        if task is None:
            self.tasks[key] = self.bars.add_task(label, total=total)
        else:
            self.bars.reset(task, total=total, description=label)

    def advance(self, label: str, n: int) -> None:
        task = self.tasks.get(label.split(maxsplit=1)[0])
        if task is not None and n:
            self.bars.advance(task, n)

    def note(self, text: str) -> None:
        self.bars.console.print(f"  {text}")
