"""Progress on the terminal for long work: the commands that replay a whole ledger
(``audit``, ``settle``, ``reconcile``, ``evidence``) and the demo's fairness phase.

A bar (rich) on stderr, and only when stderr is a terminal: piped or captured output
(scripts, CI, the tests) gets none of it, so stdout and stderr carry exactly what they
did. The bar is transient: it is erased when the work ends, leaving the report.

The work reports through :func:`counted` (wrap an iterator) or :class:`Steps` (a count
of steps), which do nothing at all unless a command opened :func:`on_terminal`: the
core and the replay know nothing of terminals.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")
# Items between two updates of a bar: an update costs microseconds, an entry's replay
# a few; updating every 2,000 keeps the bar's cost out of the measurements.
ITEMS_PER_UPDATE = 2_000

_bar: ContextVar[Progress | None] = ContextVar("lijian_progress", default=None)


def wanted() -> bool:
    """A bar only for a person watching: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


@contextmanager
def on_terminal() -> Iterator[None]:
    """Show the progress of the work inside on stderr, if it is a terminal."""
    if not wanted() or _bar.get() is not None:
        yield
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    token = _bar.set(bar)
    try:
        with bar:
            yield
    finally:
        _bar.reset(token)


def counted(items: Iterable[T], total: int | None, label: str) -> Iterable[T]:
    """``items`` unchanged; under :func:`on_terminal`, counted on a bar as they pass."""
    bar = _bar.get()
    if bar is None:
        return items
    return _counting(items, bar, bar.add_task(label, total=total))


def _counting(items: Iterable[T], bar: Progress, task: TaskID) -> Iterator[T]:
    n = 0
    try:
        for item in items:
            yield item
            n += 1
            if n % ITEMS_PER_UPDATE == 0:
                bar.update(task, completed=n)
    finally:
        bar.update(task, completed=n, total=n)  # done (a total read earlier may be off)


class Steps:
    """A bar of ``total`` steps advanced by the caller (nothing without a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self._bar = _bar.get()
        self._task = self._bar.add_task(label, total=total) if self._bar else None

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def describe(self, label: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=label)
