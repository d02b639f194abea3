"""Clock adapters. The core never reads time; the engine asks one of these."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Protocol

# A manual clock shows a moment of this century only. Far beyond it, times no longer
# render in a campaign's zone (year 10000 after +08:00 overflows ``datetime``), and no
# campaign runs there: a move outside is refused before anything runs.
MANUAL_CLOCK_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MANUAL_CLOCK_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def check_manual_ms(ts_ms: int) -> int:
    """``ts_ms`` when a manual clock may show it, else ``ValueError`` saying the range."""
    if not MANUAL_CLOCK_MIN_MS <= ts_ms < MANUAL_CLOCK_MAX_MS:
        raise ValueError("the manual clock shows times from 2000-01-01 to 2099-12-31 (UTC)")
    return ts_ms


log = logging.getLogger("lijian.clock")


class Clock(Protocol):
    manual: bool

    def now_ms(self) -> int: ...


class SystemClock:
    """Real time, for production."""

    manual = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A campaign clock moved by the operator (``--clock manual:…``) or the simulator.

    It only moves forward: the ledger's timed events (releases, expiries, restores)
    have already happened for every moment it has shown.
    """

    manual = True

    def __init__(self, start_ms: int) -> None:
        self._now_ms = check_manual_ms(start_ms)
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now_ms

    def set_ms(self, ts_ms: int) -> int:
        with self._lock:
            if ts_ms < self._now_ms:
                raise ValueError("the manual clock only moves forward")
            self._now_ms = check_manual_ms(ts_ms)
            return ts_ms

    def restore(self, ts_ms: int) -> None:
        """Set the clock to the time the ledger recorded (recovery only: the ledger's
        clock wins over the one the process was started with, in either direction)."""
        with self._lock:
            self._now_ms = ts_ms

    def advance_ms(self, delta_ms: int) -> int:
        if delta_ms < 0:
            raise ValueError("the manual clock only moves forward")
        with self._lock:
            self._now_ms = check_manual_ms(self._now_ms + delta_ms)
            return self._now_ms


def ledger_clock(clock: Clock, recorded_ms: int | None, ledger_now_ms: int = 0) -> Clock:
    """The clock a recovered ledger runs on. A ledger whose manual clock moved (a
    ``ClockMoved`` entry) never goes back: its clock wins over a ``--clock`` that is
    earlier or ``system``, with one log line. A later manual ``--clock`` is kept: a move
    forward at start, which the engine records as an entry before serving. A ledger
    whose clock never moved keeps ``clock``, except that a manual one earlier than the
    ledger's last entry (``ledger_now_ms``) starts from that entry's time, with one log
    line: time never goes back, and a clock left behind would not move the ledger's
    time when advanced."""
    if recorded_ms is None:
        if isinstance(clock, ManualClock) and clock.now_ms() < ledger_now_ms:
            log.warning(
                "clock_from_ledger: the ledger's last entry is at %s, after the manual "
                "clock given at start (%s); it runs from the ledger's time",
                _utc(ledger_now_ms),
                _utc(clock.now_ms()),
            )
            clock.restore(ledger_now_ms)
        return clock
    if isinstance(clock, ManualClock) and clock.now_ms() >= recorded_ms:
        return clock
    given = f"manual at {clock.now_ms()} ms" if clock.manual else "system"
    log.warning(
        "clock_from_ledger: the ledger's manual clock was moved to %s; it wins over the "
        "clock given at start (%s)",
        dt.datetime.fromtimestamp(recorded_ms / 1000, dt.UTC).isoformat(),
        given,
    )
    if isinstance(clock, ManualClock):
        clock.restore(recorded_ms)  # the same object: whoever holds it sees the ledger's
        return clock
    return ManualClock(recorded_ms)


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def parse_clock(spec: str | None) -> Clock:
    """``None`` or ``system`` → real time; ``manual:2025-02-12T09:59:00+08:00`` → manual."""
    if not spec or spec == "system":
        return SystemClock()
    kind, _, rest = spec.partition(":")
    if kind != "manual" or not rest:
        raise ValueError(f"clock must be 'system' or 'manual:<RFC 3339 time>', got {spec!r}")
    moment = dt.datetime.fromisoformat(rest)
    if moment.tzinfo is None:
        raise ValueError("the manual clock's start needs an explicit offset, e.g. +08:00")
    try:
        start_ms = int(moment.timestamp() * 1000)
    except (OverflowError, ValueError):
        start_ms = -1  # refused just below, with the range
    return ManualClock(start_ms)
