"""``lijian audit``: replay every stored entry from zero and check every invariant.

The replay uses a fresh ``Ledger`` and the same ``apply`` as the engine, so the apply
assertions re-check each entry (a hold ends at most once, holds fit the tranche and the
cap, refunds fit the order). Then the invariants of docs/ARCHITECTURE.md are checked on the result,
and the replayed balances are compared with the balances stored beside the entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from lijian.catalog import Catalog
from lijian.core.book import Book
from lijian.core.chain import first_break
from lijian.core.entries import AnyEntry
from lijian.core.invariants import balances, check_invariants
from lijian.core.ledger import Ledger
from lijian.core.replay import ReplayFailed
from lijian.core.settings import Settings
from lijian.core.snapshot import (
    SNAPSHOT_VERSION,
    SnapshotMismatch,
    peek_version,
    restore_snapshot,
)
from lijian.ledger_file import LedgerFileError, open_ledger
from lijian.progress import counted
from lijian.store import Store, shown_db
from lijian.stored_ledger import StoredSettingsError, open_stored_ledger, stored_settings

MAX_VIOLATIONS_LISTED = 1_000
CHAIN_CHECK = "hash chain: chain = SHA-256(previous chain || body)"
CATALOG_CHECK = "the catalogue loads (a start can read every row)"


@dataclass
class AuditReport:
    entries: int = 0
    campaigns: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    checks: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, name: str, problems: list[str]) -> None:
        self.checks.append({"name": name, "ok": not problems, "problems": problems[:20]})
        room = MAX_VIOLATIONS_LISTED - len(self.violations)
        self.violations.extend(problems[: max(0, room)])


def audit_ledger(ledger: Ledger, store: Store | None) -> AuditReport:
    """Check a live or replayed ledger (and, with a store, its stored balances)."""
    rep = invariants_report(ledger, check_invariants(ledger))
    if store is not None:
        rep.add("replayed balances = stored balances", _compare_stored(ledger, store))
    return rep


def invariants_report(ledger: Ledger, problems: list[str]) -> AuditReport:
    """The report's checks from the invariants' violations (found at once, or in slices
    by lijian/reports.py)."""
    rep = AuditReport(entries=ledger.entries_applied, campaigns=list(ledger.books))
    rep.add(
        "R1 budget: granted + held <= released <= budget; money conserved",
        [p for p in problems if "tranche" in p or "money" in p or "R1" in p],
    )
    rep.add("R7 person caps: used + held <= cap", [p for p in problems if "person" in p])
    rep.add(
        "operator changes: four eyes; no cut below granted + held; blocks enforced",
        [p for p in problems if "amendment" in p or "budget" in p or " changes: " in p],
    )
    rep.add(
        "refunds: card refunds <= paid, clawbacks <= discount",
        [p for p in problems if p.startswith("redemption")],
    )
    return rep


def _compare_stored(ledger: Ledger, store: Store) -> list[str]:
    out: list[str] = []
    replayed = balances(ledger)
    stored = store.stored_balances()
    for key, value in sorted(replayed.items()):
        if key in stored and stored[key] != value:
            out.append(f"balance {key}: stored {stored[key]} != replayed {value}")
    for key in sorted(set(stored) - set(replayed)):
        out.append(f"balance {key}: stored but unknown to the replay")
    stored_p = store.stored_persons()
    for (cid, pid), (used, held) in sorted(stored_p.items()):
        b = ledger.books.get(cid)
        p = b.persons.get(pid) if b else None
        got = (p.used_fen, p.held_fen) if p else (0, 0)
        if got != (used, held):
            out.append(f"person {cid}/{pid}: stored used/held {used}/{held} != replayed {got}")
    for cid, b in ledger.books.items():
        for pid, p in b.persons.items():
            if (cid, pid) not in stored_p and (p.used_fen or p.held_fen):
                out.append(f"person {cid}/{pid}: in the ledger but not stored")
    return out


def audit_db(path: str | Path, order_registry: str | None = None) -> AuditReport:
    """Audit a SQLite file or a PostgreSQL database (``postgresql://`` URL); with the
    order registry of sharded campaigns, the ledger's rows there too (``audit_registry``:
    ``RegistryUnreadable`` if it does not answer)."""
    # Checked read-only first (lijian.ledger_file): an empty or foreign file is refused
    # with LedgerFileError, never given a schema.
    store = open_ledger(path)
    try:
        with store.consistent_reads():  # entries and rows of one moment, even while writing
            rep = _audit_store(store, order_registry)
        changed = getattr(store, "changed_since_open", None)
        if changed is not None and changed():
            # Opened as immutable (no server had it open) and a server started meanwhile:
            # what was read may mix two moments, so the report proves nothing.
            raise LedgerFileError(f"{shown_db(path)} changed during the audit (a server "
                                  "started on it): run the audit again")  # fmt: skip
        return rep
    finally:
        store.close()


def _audit_store(store: Store, order_registry: str | None = None) -> AuditReport:
    """Replay from zero, compare the snapshot, check invariants and stored figures (and
    the order registry's rows, given its URL)."""
    rep = AuditReport()
    try:
        settings = stored_settings(store)
    except StoredSettingsError as exc:
        for cid, problems in exc.problems.items():
            rep.add(f"settings of {cid}", problems)
        return rep
    if not settings:
        rep.add("campaigns stored", ["the database holds no campaign"])
        return rep
    # First, so that a rewritten entry is named even when the replay cannot read it.
    rep.add(CHAIN_CHECK, check_chain(store))
    snap = store.latest_snapshot()
    if snap is not None and peek_version(snap[1]) != SNAPSHOT_VERSION:
        # Written by an older release: a start does not read it either (it replays from
        # zero), so there is nothing it could make a start believe.
        old = peek_version(snap[1])
        rep.add(f"snapshot at seq {snap[0]}: format {old}, not compared (this release "
                f"reads {SNAPSHOT_VERSION}; a start replays instead)", [])  # fmt: skip
        snap = None
    snap_problems: list[str] = []
    at_seq = [0]

    def each(ledger: Ledger, seq: int, _entry: AnyEntry) -> None:
        at_seq[0] = seq
        if snap is not None and seq == snap[0]:
            snap_problems[:] = _compare_snapshot(ledger, settings, snap[1])

    try:
        if snap is not None and snap[0] == 0:
            snap_problems = _compare_snapshot(Ledger(settings), settings, snap[1])
        ledger = open_stored_ledger(store, settings, on_entry=each).ledger
    except ReplayFailed as exc:  # what stops the replay stops the engine's start too
        rep.add("replay from zero", [f"entry {exc.seq}: {_one_line(exc.cause)}"])
        return rep
    except Exception as exc:  # an entry that cannot be read: after the last one read
        rep.add("replay from zero", [f"entry {at_seq[0]}: {_one_line(exc)}"])
        return rep
    rep.add("replay from zero", [])
    rep.add(CATALOG_CHECK, check_catalog_loads(store))
    if snap is not None:
        if snap[0] > at_seq[0]:
            snap_problems.append(f"snapshot at seq {snap[0]} is beyond the last entry")
        rep.add(f"snapshot at seq {snap[0]} = replay to that seq", snap_problems)
    full = audit_ledger(ledger, store)
    full.checks = rep.checks + full.checks
    full.violations = rep.violations + full.violations
    if order_registry is not None:
        from lijian.audit_registry import check_registry

        for name, problems in check_registry(ledger, order_registry):
            full.add(name, problems)
    return full


def _one_line(exc: BaseException) -> str:
    return " ".join(repr(exc).split())[:500]


def check_catalog_loads(store: Store) -> list[str]:
    """What a start loads besides the entries: the catalogue (engine_recovery.py).
    A row that it could not hold makes the ledger unable to start: name the first."""
    catalog = Catalog()
    for n, row in enumerate(store.catalog_rows(), 1):
        try:
            catalog.upsert((row,))
        except Exception as exc:  # the engine's start fails at this row the same way
            return [f"catalogue row {n} ({row[0]!r}, {row[1]!r}): {_one_line(exc)}"]
    return []


def check_chain(store: Store) -> list[str]:
    """Recompute the chain from zero: name the first seq whose stored chain differs (an
    entry edited, deleted, inserted or moved there or just before), and check that every
    recorded day close is the chain at its seq."""
    wanted = {d.seq: d for d in store.day_closes}
    seen: dict[int, bytes] = {}
    last = [0]

    def rows() -> Iterator[tuple[int, bytes, bytes | None]]:
        for seq, body, chain in counted(store.iter_chain(), store.last_seq, "the hash chain"):
            last[0] = seq
            if seq in wanted and chain is not None:
                seen[seq] = chain
            yield seq, body, chain

    _, broken = first_break(rows())
    if broken is not None:
        return [broken.describe()]
    out = []
    for seq, d in sorted(wanted.items()):
        # (closes were read when the store opened; one written since is not in this read)
        if seq <= last[0] and seen.get(seq) != d.head:
            out.append(
                f"day close {d.campaign_id} {d.day}: head at seq {seq} is not the chain there"
            )
    return out[:MAX_VIOLATIONS_LISTED]


def _compare_snapshot(replayed: Ledger, settings: list[Settings], blob: bytes) -> list[str]:
    """The stored snapshot must equal the replay at its seq, balance for balance."""
    fresh = Ledger(settings)
    try:
        restore_snapshot(fresh, blob)
    except (SnapshotMismatch, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return [f"snapshot unreadable: {exc}"]
    except Exception as exc:  # a start restores this snapshot: it would fail the same way
        return [f"snapshot does not fit the ledger: {_one_line(exc)}"]
    out = []
    want, got = balances(replayed), balances(fresh)
    out += [
        f"snapshot balance {k}: {got.get(k)} != replay {v}"
        for k, v in want.items()
        if got.get(k) != v
    ]
    for rid, r in replayed.redemptions.items():
        if fresh.redemptions.get(rid) != r:
            out.append(f"snapshot redemption {rid} differs from the replay")
    out += [
        f"snapshot has unknown redemption {rid}"
        for rid in fresh.redemptions
        if rid not in replayed.redemptions
    ]
    for cid, b in replayed.books.items():
        fb = fresh.books[cid]
        if {k: (p.used_fen, p.held_fen) for k, p in b.persons.items()} != {
            k: (p.used_fen, p.held_fen) for k, p in fb.persons.items()
        }:
            out.append(f"snapshot persons of {cid} differ from the replay")
        if _settled(b) != _settled(fb):
            out.append(f"snapshot daybook of {cid} (settlement, holds) differs from the replay")
    return out[:MAX_VIOLATIONS_LISTED]


def _settled(b: Book) -> dict[str, tuple[object, int, int]]:
    """A daybook's settlement and holds per day: what a snapshot must carry exactly
    (burn-down points of a snapshot from before the daybook are not in it)."""
    return {
        day: (d.settled, d.holds, d.hold_fen)
        for day, d in b.daybook.days.items()
        if d.settled or d.holds
    }
