"""``lijian audit``: replay every stored entry from zero and check every invariant.

The replay uses a fresh ``Ledger`` and the same ``apply`` as the engine, so the apply
assertions re-check each entry (a hold ends at most once, holds fit the tranche and the
cap, refunds fit the order). Then the invariants of design.md are checked on the result,
and the replayed balances are compared with the balances stored beside the entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lijian.core.invariants import balances, check_invariants
from lijian.core.ledger import Ledger
from lijian.core.settings import SettingsError, parse_settings
from lijian.store.sqlite import SqliteStore

MAX_VIOLATIONS_LISTED = 1_000


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


def audit_ledger(ledger: Ledger, store: SqliteStore | None) -> AuditReport:
    """Check a live or replayed ledger (and, with a store, its stored balances)."""
    rep = AuditReport(entries=ledger.entries_applied, campaigns=list(ledger.books))
    problems = check_invariants(ledger)
    rep.add(
        "R1 budget: granted + held <= released <= budget; money conserved",
        [p for p in problems if "tranche" in p or "money" in p or "R1" in p],
    )
    rep.add("R7 person caps: used + held <= cap", [p for p in problems if "person" in p])
    rep.add(
        "refunds: card refunds <= paid, clawbacks <= discount",
        [p for p in problems if p.startswith("redemption")],
    )
    if store is not None:
        rep.add("replayed balances = stored balances", _compare_stored(ledger, store))
    return rep


def _compare_stored(ledger: Ledger, store: SqliteStore) -> list[str]:
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


def audit_db(path: str | Path) -> AuditReport:
    if not Path(path).exists():
        raise FileNotFoundError(f"no database at {path}")
    store = SqliteStore(path)
    try:
        rep = AuditReport()
        settings = []
        for cid, raw in store.campaigns():
            try:
                settings.append(parse_settings(json.loads(raw)))
            except SettingsError as exc:
                rep.add(f"settings of {cid}", [str(p) for p in exc.problems])
        if not settings:
            rep.add("campaigns stored", ["the database holds no campaign"])
            return rep
        ledger = Ledger(settings)
        at_seq = 0
        try:
            for seq, entry in store.iter_entries():
                at_seq = seq
                ledger.apply(entry)
        except (AssertionError, KeyError, StopIteration) as exc:
            rep.add("replay from zero", [f"entry {at_seq}: {exc!r}"])
            return rep
        rep.add("replay from zero", [])
        full = audit_ledger(ledger, store)
        full.checks = rep.checks + full.checks
        full.violations = rep.violations + full.violations
        return full
    finally:
        store.close()
