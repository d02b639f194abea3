"""``verify``'s check of the range's other rows (range_rows.py): the vouchers, lottery
draws, trade-in items and risk rows are exactly the entries say, and the campaigns the
bundle quotes for vouchers from before the range are the ones their entries give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lijian.evidence.range_rows import NOUNS, ROW_KEYS, Row, range_rows, shown, vouchers_before
from lijian.evidence.schema import Bundle, DayFacts

Fail = Callable[[str, str], None]  # Verdict.fail: (check, why)


def check_range_rows(fail: Fail, b: Bundle, facts: DayFacts) -> None:
    quoted: dict[str, str] = {}
    for q in b.voucher_campaigns:
        if q.voucher_id in quoted:
            fail("rows", f"voucher_campaigns lists voucher {q.voucher_id[:64]} twice")
        quoted[q.voucher_id] = q.campaign_id
    needed = set(vouchers_before(facts.entries))
    for vid in sorted(set(quoted) - needed):
        fail("rows", f"voucher_campaigns names voucher {vid[:64]}, which the range does not need")
    want = range_rows(facts.entries, b.campaign_id, facts.tz, quoted)
    for problem in want.problems:
        fail("rows", problem)
    listed = {"vouchers": b.vouchers, "lotteries": b.lotteries, "items": b.items, "risk": b.risk}
    for key in ROW_KEYS:
        _check_list(fail, key, listed[key], want.rows[key])


def _check_list(fail: Fail, key: str, listed: list[Row], want: list[Row]) -> None:
    """One list's rows against the entries' (each names its entry by ``"entry"``)."""
    by_entry: dict[int, Row] = {}
    for row in listed:
        n = row.get("entry")
        if type(n) is not int or n in by_entry:
            fail("rows", f"a {NOUNS[key]} row has no entry index, or is listed twice")
            return
        by_entry[n] = row
    wanted: dict[int, Row] = {}
    for row in want:
        n = row["entry"]
        assert type(n) is int  # range_rows gives each row its index
        wanted[n] = row
    wrong = False
    for n, row in wanted.items():
        got = by_entry.get(n)
        if got is None:
            fail("rows", f"{shown(key, row)} is in the entries but not listed")
        elif got != row:
            fail("rows", f"{shown(key, row)} is not as its entry says")
        wrong = wrong or got != row
    for n, row in by_entry.items():
        if n not in wanted:
            fail("rows", f"{shown(key, row)} is listed but is no such entry of the campaign")
            wrong = True
    if not wrong and listed != want:
        fail("rows", f"the {key} rows are not in the order of their entries")


def check_voucher_origins(fail: Fail, b: Bundle, prev: DayFacts, previous: Path) -> None:
    """The campaigns quoted for vouchers claimed on the day before: as its entries say."""
    there = range_rows(prev.entries, b.campaign_id, prev.tz, {}).origins
    for q in b.voucher_campaigns:
        c = there.get(q.voucher_id)
        if c is not None and c != q.campaign_id:
            fail("previous", f"the campaign of voucher {q.voucher_id[:64]} is not the one "
                             f"in {previous}'s entries")  # fmt: skip
