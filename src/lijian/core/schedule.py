"""The campaign calendar: one tranche per day, its amount and its window (R2, R3).

Times are epoch milliseconds (``_ms``); the local day is computed in the campaign's own
time zone with ``zoneinfo``, never the machine's.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from lijian.core.settings import Settings

MS_PER_S = 1000


@dataclass(frozen=True, slots=True)
class TrancheWindow:
    date: dt.date
    base_fen: int
    opens_at_ms: int
    closes_at_ms: int


def split_budget_fen(budget_fen: int, days: int) -> list[int]:
    """R3 equal split: the same amount each day, the remainder fen on the last day."""
    assert budget_fen >= 0 and days > 0
    each, rest = divmod(budget_fen, days)
    amounts = [each] * days
    amounts[-1] += rest
    assert sum(amounts) == budget_fen
    return amounts


def to_ms(moment: dt.datetime) -> int:
    assert moment.tzinfo is not None, "naive datetimes are refused: time zone is explicit"
    return int(moment.timestamp() * MS_PER_S)


def from_ms(ts_ms: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / MS_PER_S, tz)


def local_at(day: dt.date, minutes: int, tz: ZoneInfo) -> dt.datetime:
    """The local moment ``minutes`` after midnight of ``day`` (1440 = next midnight)."""
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    # Add wall-clock minutes then re-localise, so a DST zone still gets "10:00 local".
    naive = midnight.replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    return naive.replace(tzinfo=tz)


class Schedule:
    """Every tranche of a campaign, in date order, with O(log n) lookup by time."""

    def __init__(self, settings: Settings) -> None:
        c = settings.campaign
        self.tz = ZoneInfo(c.timezone)
        days = (c.end_date - c.start_date).days + 1
        dates = [c.start_date + dt.timedelta(days=i) for i in range(days)]
        if c.tranches == "equal":
            amounts = split_budget_fen(c.budget_fen, days)
        else:
            assert isinstance(c.tranches, dict)
            amounts = [c.tranches.get(d, 0) for d in dates]
        self.windows: list[TrancheWindow] = [
            TrancheWindow(
                date=d,
                base_fen=a,
                opens_at_ms=to_ms(local_at(d, c.daily_open_min, self.tz)),
                closes_at_ms=to_ms(local_at(d, c.daily_close_min, self.tz)),
            )
            for d, a in zip(dates, amounts, strict=True)
        ]
        self.by_date = {w.date: w for w in self.windows}
        self._opens = [w.opens_at_ms for w in self.windows]
        self.starts_at_ms = to_ms(local_at(c.start_date, 0, self.tz))
        self.ends_at_ms = to_ms(local_at(c.end_date, 1440, self.tz))
        assert sum(w.base_fen for w in self.windows) == c.budget_fen

    def local_date(self, ts_ms: int) -> dt.date:
        return from_ms(ts_ms, self.tz).date()

    def next_midnight_ms(self, ts_ms: int) -> int:
        """00:00 local of the day after ``ts_ms`` (R17's "next day")."""
        return to_ms(local_at(self.local_date(ts_ms), 1440, self.tz))

    def window_at(self, ts_ms: int) -> TrancheWindow | None:
        """The latest window that has opened at ``ts_ms`` (open or already closed)."""
        i = bisect.bisect_right(self._opens, ts_ms) - 1
        return self.windows[i] if i >= 0 else None

    def next_window_after(self, ts_ms: int) -> TrancheWindow | None:
        """The first window that opens strictly after ``ts_ms``."""
        i = bisect.bisect_right(self._opens, ts_ms)
        return self.windows[i] if i < len(self.windows) else None

    def following(self, day: dt.date) -> TrancheWindow | None:
        return self.by_date.get(day + dt.timedelta(days=1))
