"""``lijian risk --db … --date …``: a day's risk flags as CSV, one file per campaign,
from the ledger replayed read-only (the same flags ``GET …/risk`` lists)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.console import Console

from lijian.core.ledger import Ledger
from lijian.core.risk import FLAGS_PAGE_MAX
from lijian.core.views import iso
from lijian.reconcile import (
    ReplayError,
    _write_atomically,
    campaigns_to_report,
    parse_day,
    replay_db,
)

COLUMNS = ("flag_id", "code", "day", "raised_at", "person_ids", "redemption_ids", "figures")


def risk_csv(ledger: Ledger, campaign_id: str, day: str) -> tuple[str, int]:
    """The day's flags as CSV (ids joined by spaces, figures as ``subject:figure=value``),
    read in pages of the API's size; and how many flags it holds."""
    tz = ledger.book(campaign_id).settings.tz
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    while page := ledger.risk.page(campaign_id, day, n, FLAGS_PAGE_MAX):
        for e in page:
            figures = " ".join(f"{s}:{f}={v}" for s, f, v in e.figures)
            w.writerow((e.flag_id, e.code.value, e.day, iso(e.ts_ms, tz),
                        " ".join(e.person_ids), " ".join(e.redemption_ids), figures))  # fmt: skip
        n += len(page)
    return buf.getvalue(), n


def risk_path(out_dir: Path, campaign_id: str, day: str) -> Path:
    return out_dir / f"risk-{campaign_id}-{day}.csv"


def risk_command(
    db: str | Path, date: str, campaign_id: str | None, out_dir: Path, console: Console,
    err: Console,
) -> int:  # fmt: skip
    """Exit 0 with the files written; 2 for a bad date, ledger or campaign (one line)."""
    try:
        day = parse_day(date)
    except ValueError as exc:
        err.print(f"lijian risk: --date: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    try:
        ledger = replay_db(db)
        ids = campaigns_to_report(ledger, campaign_id)
    except ReplayError as exc:
        err.print(f"lijian risk: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    for cid in ids:
        text, n = risk_csv(ledger, cid, day)
        path = risk_path(out_dir, cid, day)
        _write_atomically(path, text)
        console.print(f"{n:,} flag(s) of {cid} on {day} in {path}", highlight=False, markup=False)
    return 0
