"""Settling up after the fact: R19 settlement files and reconciliation with the channel.

Both work on a ledger file, not on a running server: the file is replayed from zero
into a fresh ``Ledger`` through ``Ledger.apply``, exactly as ``lijian audit`` does, so
the figures are those of every committed entry and nothing is written to the file.

``lijian settle`` writes one CSV per campaign and day with the rows of
``core/settlement.py`` (the same function the API's ``GET .../settlement`` calls, so
the file and the API cannot disagree).

``lijian reconcile`` compares the payment channel's settlement file with the ledger.
The file is CSV, UTF-8 (a byte-order mark is accepted), with exactly this header::

    redemption_id,order_id,discount_fen,refunded_fen

one row per redemption the channel considers paid: our redemption id, the platform's
order id, the discount the channel applied (fen) and what it has refunded to the card
so far (fen, cumulative). The ledger side is every redemption that was captured
(status ``captured``, ``partially_refunded`` or ``refunded``); its refunded amount is
the sum of its card refunds (R17/R18). Every difference is listed (see ``KINDS``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lijian.core.daybook import Figures
from lijian.core.ledger import Ledger
from lijian.core.money import format_cny
from lijian.core.settlement import Settlement, settlement, settlement_csv
from lijian.core.status import SETTLED
from lijian.ledger_file import LedgerFileError, open_ledger
from lijian.progress import on_terminal
from lijian.store import shown_db
from lijian.stored_ledger import StoredSettingsError, open_stored_ledger

CHANNEL_HEADER = ("redemption_id", "order_id", "discount_fen", "refunded_fen")
# Limits on what a channel file may hold: a file beyond them is a wrong file, and the
# bounds keep a bad upload from exhausting memory.
CHANNEL_ROWS_MAX = 20_000_000
ID_LEN_MAX = 128  # ids in the core are 1-128 characters
AMOUNT_DIGITS_MAX = 15  # 10**15 fen is beyond any budget the settings accept
FILE_PROBLEMS_LISTED_MAX = 100

MISSING_IN_FILE = "missing_in_file"  # captured in the ledger, absent from the file
EXTRA_IN_FILE = "extra_in_file"  # in the file, but unknown or never captured in the ledger
DUPLICATE_IN_FILE = "duplicate_in_file"  # the same redemption id on two rows
AMOUNT_DIFFERS = "amount_differs"  # discount_fen or refunded_fen differ
ORDER_ID_DIFFERS = "order_id_differs"
KINDS = (MISSING_IN_FILE, EXTRA_IN_FILE, DUPLICATE_IN_FILE, AMOUNT_DIFFERS, ORDER_ID_DIFFERS)


class ReplayError(Exception):
    """The ledger file cannot be replayed (missing, no campaign, bad settings)."""


class ChannelFileError(Exception):
    """The channel file is unusable; ``problems`` lists what is wrong (bounded)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# ------------------------------------------------------------------------ replay
def replay_db(path: str | Path) -> Ledger:
    """Replay every committed entry of a ledger (SQLite file or ``postgresql://`` URL)
    into a fresh ``Ledger``."""
    try:
        # Checked read-only first: a missing, empty or foreign file is never written to.
        store = open_ledger(path)
    except LedgerFileError as exc:
        raise ReplayError(str(exc)) from None
    try:
        return open_stored_ledger(store).ledger
    except StoredSettingsError as exc:
        raise ReplayError(str(exc)) from None
    finally:
        store.close()


def campaigns_to_report(ledger: Ledger, campaign_id: str | None) -> list[str]:
    if campaign_id is None:
        return sorted(ledger.books)
    if campaign_id not in ledger.books:
        known = ", ".join(sorted(ledger.books))
        raise ReplayError(f"unknown campaign {campaign_id!r} (the file holds: {known})")
    return [campaign_id]


# -------------------------------------------------------------------- settlement
def parse_day(text: str) -> str:
    """A YYYY-MM-DD date, normalised; ValueError otherwise."""
    if len(text) != 10:
        raise ValueError(f"not a date YYYY-MM-DD: {text!r}")
    return dt.date.fromisoformat(text).isoformat()


def settlement_path(out_dir: Path, campaign_id: str, day: str) -> Path:
    return out_dir / f"settlement-{campaign_id}-{day}.csv"


def write_settlements(
    ledger: Ledger, day: str, campaign_ids: Iterable[str], out_dir: Path
) -> list[tuple[Path, Settlement]]:
    """Write one settlement CSV per campaign; returns (path, report) for each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cid in campaign_ids:
        report = settlement(ledger, cid, day)
        path = settlement_path(out_dir, cid, day)
        _write_atomically(path, settlement_csv(report))
        written.append((path, report))
    return written


def _write_atomically(path: Path, text: str) -> None:
    # A payment run may pick the file up at any moment: never let it see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- reconciliation
@dataclass(frozen=True, slots=True)
class ChannelRow:
    line: int  # 1-based line number in the file (the header is line 1)
    redemption_id: str
    order_id: str
    discount_fen: int
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str  # one of KINDS
    redemption_id: str
    field: str  # the differing field, "" when the whole row is missing or extra
    ledger: str  # the ledger's value ("" when absent)
    file: str  # the file's value ("" when absent)
    line: int | None  # line in the channel file, None when the row is missing
    detail: str = ""

    def as_line(self) -> str:
        parts = [self.kind, self.redemption_id]
        if self.field:
            parts.append(f"{self.field}: ledger={self.ledger} file={self.file}")
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.detail:
            parts.append(self.detail)
        return "\t".join(parts)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_channel_file(path: str | Path) -> list[ChannelRow]:
    """Parse the channel file; raises ChannelFileError listing what is malformed."""
    problems: list[str] = []
    rows: list[ChannelRow] = []
    try:
        f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ChannelFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    with f:
        try:
            reader = csv.reader(f, strict=True)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != CHANNEL_HEADER:
                raise ChannelFileError(
                    [f"{path}: line 1: the header must be {','.join(CHANNEL_HEADER)}"]
                )
            for fields in reader:
                line = reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank lines, e.g. a trailing one
                if len(rows) >= CHANNEL_ROWS_MAX:
                    problems.append(f"more than {CHANNEL_ROWS_MAX} rows")
                    break
                row = _channel_row(line, fields, problems)
                if row is not None:
                    rows.append(row)
        except UnicodeDecodeError as exc:
            problems.append(f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        except csv.Error as exc:
            problems.append(f"line {reader.line_num}: not valid CSV: {exc}")
    if problems:
        shown = problems[:FILE_PROBLEMS_LISTED_MAX]
        if len(problems) > len(shown):
            shown.append(f"… and {len(problems) - len(shown)} more")
        raise ChannelFileError([f"{path}: {p}" for p in shown])
    return rows


def write_channel_file(ledger: Ledger, campaign_id: str, day: str, path: Path) -> int:
    """A sample of the channel's daily file, as a channel that agrees with the ledger
    would send it: every redemption of that campaign day that was captured (``make
    demo`` writes one to show ``lijian reconcile --date``). Returns the rows written."""
    rows = sorted(
        (r for r in ledger.redemptions.values()
         if r.status in SETTLED and r.campaign_id == campaign_id and r.day == day),
        key=lambda r: r.id,
    )  # fmt: skip
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")  # quotes an order id with a comma
    out.writerow(CHANNEL_HEADER)
    out.writerows((r.id, r.order_id, r.discount_fen, r.card_refunded_fen) for r in rows)
    _write_atomically(path, text.getvalue())
    return len(rows)


def _channel_row(line: int, fields: list[str], problems: list[str]) -> ChannelRow | None:
    if len(fields) != len(CHANNEL_HEADER):
        problems.append(f"line {line}: {len(fields)} fields, expected {len(CHANNEL_HEADER)}")
        return None
    rid, oid, disc, refunded = (x.strip() for x in fields)
    n = len(problems)
    for name, value in (("redemption_id", rid), ("order_id", oid)):
        if not 1 <= len(value) <= ID_LEN_MAX:
            problems.append(f"line {line}: {name} must be 1-{ID_LEN_MAX} characters")
    amounts = []
    for name, value in (("discount_fen", disc), ("refunded_fen", refunded)):
        # Whole fen only: "37.20" would be yuan, a wrong file rather than a mismatch.
        if not value.isascii() or not value.isdigit() or len(value) > AMOUNT_DIGITS_MAX:
            problems.append(f"line {line}: {name} must be a whole number of fen, got {value!r}")
            amounts.append(0)
        else:
            amounts.append(int(value))
    if len(problems) > n:
        return None
    return ChannelRow(line, rid, oid, amounts[0], amounts[1])


@dataclass(frozen=True, slots=True)
class Days:
    """The campaign days a channel file covers (inclusive); None: every day."""

    first: str | None = None
    last: str | None = None

    def __contains__(self, day: object) -> bool:
        assert isinstance(day, str)
        return (self.first is None or self.first <= day) and (self.last is None or day <= self.last)

    def text(self) -> str:
        if self.first == self.last:
            return f"day {self.first}"
        return f"days {self.first or '…'} to {self.last or '…'}"


EVERY_DAY = Days()


def reconcile(
    ledger: Ledger,
    rows: Iterable[ChannelRow],
    campaign_id: str | None = None,
    days: Days = EVERY_DAY,
) -> list[Mismatch]:
    """Every difference between the channel's rows and the ledger's captured redemptions.

    With ``campaign_id`` only that campaign's redemptions are expected in the file, and a
    row for another campaign's redemption is extra; with ``days`` only the redemptions of
    those campaign days (a channel's daily file), and a row of another day is extra.
    """
    expected = {
        r.id: r
        for r in ledger.redemptions.values()
        if r.status in SETTLED
        and (campaign_id is None or r.campaign_id == campaign_id)
        and r.day in days
    }
    out: list[Mismatch] = []
    seen: dict[str, int] = {}
    for row in rows:
        rid = row.redemption_id
        if rid in seen:
            out.append(
                Mismatch(DUPLICATE_IN_FILE, rid, "", "", "", row.line, f"first on line {seen[rid]}")
            )
            continue
        seen[rid] = row.line
        r = expected.get(rid)
        if r is None:
            why = _why_extra(ledger, rid, days)
            out.append(Mismatch(EXTRA_IN_FILE, rid, "", "", "", row.line, why))
            continue
        if row.order_id != r.order_id:
            out.append(
                Mismatch(ORDER_ID_DIFFERS, rid, "order_id", r.order_id, row.order_id, row.line)
            )
        for name, ours, theirs in (
            ("discount_fen", r.discount_fen, row.discount_fen),
            ("refunded_fen", r.card_refunded_fen, row.refunded_fen),
        ):
            if ours != theirs:
                out.append(Mismatch(AMOUNT_DIFFERS, rid, name, str(ours), str(theirs), row.line))
    for rid, r in expected.items():
        if rid not in seen:
            out.append(
                Mismatch(
                    MISSING_IN_FILE,
                    rid,
                    "",
                    "",
                    "",
                    None,
                    f"{r.status}, order {r.order_id}, discount {r.discount_fen} fen",
                )
            )
    out.sort(key=lambda m: (m.redemption_id, KINDS.index(m.kind), m.field, m.line or 0))
    return out


def _why_extra(ledger: Ledger, rid: str, days: Days) -> str:
    r = ledger.redemptions.get(rid)
    if r is None:
        return "no such redemption in the ledger"
    if r.status not in SETTLED:
        return f"the ledger says {r.status}: never captured"
    if r.day not in days:
        return f"of day {r.day}, outside the {days.text()} reconciled"
    return f"belongs to campaign {r.campaign_id}"


# ------------------------------------------------------------------ the commands
# The bodies of ``lijian settle`` and ``lijian reconcile``; cli.py only declares options.
# Exit codes: 0 done / clean, 1 mismatches found, 2 unusable input.
def settle_command(
    db: str | Path,
    date: str,
    campaign_id: str | None,
    out_dir: Path,
    console: Console,
    err: Console,
) -> int:
    try:
        day = parse_day(date)
    except ValueError as exc:
        err.print(f"lijian settle: --date: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    try:
        with on_terminal():  # a bar while the ledger replays, on a terminal only
            ledger = replay_db(db)
        ids = campaigns_to_report(ledger, campaign_id)
    except ReplayError as exc:
        err.print(f"[red]lijian settle:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    outside = [cid for cid in ids if _outside_and_idle(ledger, cid, day)]
    if outside:
        c = ledger.books[outside[0]].settings.campaign
        err.print(
            f"lijian settle: --date {day} is outside campaign {c.id!r} ({c.start_date} to "
            f"{c.end_date}) and nothing was captured or refunded that day; no file written",
            highlight=False, markup=False, soft_wrap=True,
        )  # fmt: skip
        return 2
    for path, report in write_settlements(ledger, day, ids, out_dir):
        t = Table(title=f"{report['campaign_id']} {day}", caption=str(path))
        for col in ("platform", "count", "GMV", "discounts", "clawbacks", "net subsidy"):
            t.add_column(col, justify="left" if col == "platform" else "right")
        rows: list[tuple[str, Figures]] = [(r["platform"], r) for r in report["platforms"]]
        for name, f in [*rows, ("TOTAL", report["totals"])]:
            money = (f["gmv_fen"], f["discount_fen"], f["clawback_fen"], f["net_subsidy_fen"])
            t.add_row(name, f"{f['count']:,}", *(format_cny(fen) for fen in money))
        console.print(t)
    return 0


def _outside_and_idle(ledger: Ledger, campaign_id: str, day: str) -> bool:
    """A day outside the campaign's dates with nothing to settle: almost surely a typo.
    (After the end a refund can still claw a discount back: such a day is settled.)"""
    c = ledger.books[campaign_id].settings.campaign
    if c.start_date <= dt.date.fromisoformat(day) <= c.end_date:
        return False
    totals = settlement(ledger, campaign_id, day)["totals"]
    return bool(totals["count"] == 0 and totals["clawback_fen"] == 0)


def parse_days(date: str | None, first: str | None, last: str | None) -> Days:
    """``--date D`` or ``--from D1 --to D2`` (either may be left out); ValueError."""
    if date is not None and (first is not None or last is not None):
        raise ValueError("give --date, or --from/--to, not both")
    if date is not None:
        day = parse_day(date)
        return Days(day, day)
    days = Days(
        None if first is None else parse_day(first), None if last is None else parse_day(last)
    )
    if days.first is not None and days.last is not None and days.first > days.last:
        raise ValueError(f"--from {days.first} is after --to {days.last}")
    return days


def reconcile_command(
    db: str | Path,
    channel_file: Path,
    campaign_id: str | None,
    as_json: bool,
    err: Console,
    days: Days = EVERY_DAY,
    replayed: Ledger | None = None,
) -> int:
    """``replayed``: the ledger of ``db`` replayed already (the demo's), else replayed here."""
    try:
        ledger = replayed
        if ledger is None:
            with on_terminal():  # a bar while the ledger replays, on a terminal only
                ledger = replay_db(db)
        campaigns_to_report(ledger, campaign_id)  # refuses an unknown id
        rows = read_channel_file(channel_file)
    except ReplayError as exc:
        err.print(f"[red]lijian reconcile:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except ChannelFileError as exc:
        err.print("[red]lijian reconcile: unusable channel file[/red]", soft_wrap=True)
        for p in exc.problems:
            err.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)
        return 2
    found = reconcile(ledger, rows, campaign_id, days)
    if as_json:
        doc = {"ok": not found, "rows": len(rows), "mismatches": [m.as_dict() for m in found]}
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 1 if found else 0
    # Plain tab-separated lines, not a table: there may be many, and they get grepped.
    for m in found:
        print(m.as_line())
    by_kind: dict[str, int] = {}
    for m in found:
        by_kind[m.kind] = by_kind.get(m.kind, 0) + 1
    summary = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) or "clean"
    err.print(
        f"reconciled {len(rows):,} channel rows against {shown_db(db)}"
        + ("" if days == EVERY_DAY else f", {days.text()}")
        + f": {len(found)} mismatch(es)"
        f" ({summary})",
        highlight=False,
        soft_wrap=True,
    )
    return 1 if found else 0
