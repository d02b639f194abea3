"""The one replay (``lijian.core.replay``) and the one way to open a stored ledger
(``lijian.stored_ledger``), on a real SQLite file written by a real engine; and the rule
that keeps them the only ones: no module outside ``lijian.core`` applies an entry."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pytest

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.entries import AnyEntry, HoldPlaced
from lijian.core.invariants import balances
from lijian.core.ledger import Ledger
from lijian.core.replay import replay
from lijian.engine import Engine
from lijian.ledger_file import open_ledger
from lijian.reconcile import ReplayError, replay_db
from lijian.stored_ledger import StoredSettingsError, open_stored_ledger, stored_settings
from tests.support import CID, catalog, order, settings

SRC = Path(__file__).resolve().parents[2] / "src" / "lijian"


def written(db: Path, holds: int = 3) -> None:
    """A ledger with a catalogue, ``holds`` holds (one captured) and, at the graceful
    stop, a snapshot."""
    e = Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        ids = []
        for n in range(holds):
            out = Blocking(e).redeem(order(n, person=f"p-{n}"), "unionpay", f"K{n}", f"f{n}")
            assert out.status == 201, out.body
            ids.append(out.body["id"])
        assert Blocking(e).capture(ids[0]).status == 200
    finally:
        e.close()


def test_from_the_snapshot_and_from_zero_give_the_same_ledger(tmp_path):
    db = tmp_path / "l.db"
    written(db)
    store = open_ledger(db)
    try:
        cached = open_stored_ledger(store, from_snapshot=True)
        zero = open_stored_ledger(store)
        seqs: list[int] = []
        held: list[str] = []

        def each(ledger: Ledger, seq: int, e: AnyEntry) -> None:
            seqs.append(seq)
            if isinstance(e, HoldPlaced):  # the hook sees the ledger after the entry
                held.append(e.redemption_id)
                assert e.redemption_id in ledger.redemptions

        hooked = open_stored_ledger(store, on_entry=each)
        last_seq = max(seq for seq, _ in store.iter_entries())
    finally:
        store.close()
    # The graceful stop wrote a snapshot of everything: nothing replayed after it.
    assert cached.snapshot_seq == last_seq and cached.replayed == 0
    assert zero.snapshot_seq == 0 and zero.replayed == last_seq == len(seqs)
    assert seqs == list(range(1, last_seq + 1)) and len(held) == 3
    for other in (zero.ledger, hooked.ledger):
        assert balances(other) == balances(cached.ledger)
        assert other.redemptions == cached.ledger.redemptions
        assert other.entries_applied == cached.ledger.entries_applied == last_seq


def test_bodies_are_numbered_for_the_hook_and_a_failing_hook_stops_the_replay(tmp_path):
    db = tmp_path / "l.db"
    written(db, holds=2)
    store = open_ledger(db)
    try:
        s = stored_settings(store)
        bodies = list(store.iter_bodies())
    finally:
        store.close()
    seen: list[int] = []

    def stop_at_3(ledger: Ledger, seq: int, e: AnyEntry) -> None:
        seen.append(seq)
        if seq == 3:
            raise RuntimeError("enough")

    with pytest.raises(RuntimeError, match="enough"):
        replay(s, bodies, stop_at_3)
    assert seen == [1, 2, 3]
    assert replay(s, bodies).entries_applied == len(bodies)


def _break_settings(db: Path, text: str) -> None:
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("UPDATE campaigns SET settings_json = ?", (text,))
    finally:
        con.close()


def test_stored_settings_that_no_longer_parse_are_named_once_by_every_reader(tmp_path):
    db = tmp_path / "l.db"
    written(db, holds=1)
    doc = json.loads(
        sqlite3.connect(db).execute("SELECT settings_json FROM campaigns").fetchone()[0]
    )
    doc["campaign"]["budget_fen"] = -5
    _break_settings(db, json.dumps(doc))
    store = open_ledger(db)
    try:
        with pytest.raises(StoredSettingsError) as caught:
            stored_settings(store)
    finally:
        store.close()
    assert list(caught.value.problems) == [CID]
    assert str(caught.value).startswith(f"stored settings of {CID}: ")
    assert "budget_fen" in str(caught.value) and "\n" not in str(caught.value)
    # settle/reconcile say the same line; the audit lists it as a failed check.
    with pytest.raises(ReplayError) as by_reconcile:
        replay_db(db)
    assert str(by_reconcile.value) == str(caught.value)
    rep = audit_db(db)
    assert not rep.ok and [c["name"] for c in rep.checks] == [f"settings of {CID}"]
    _break_settings(db, "{not json")
    with pytest.raises(ReplayError, match=f"stored settings of {CID}: not JSON"):
        replay_db(db)


def _applies_outside_core() -> list[str]:
    """Every ``x.apply`` (a call, or the method taken for later) in lijian outside
    ``lijian/core``."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "apply":
                out.append(f"{rel}:{node.lineno}")
    return out


def test_no_module_outside_the_core_applies_an_entry():
    """Entries reach a ledger through ``lijian.core.replay`` (and the writer's decisions
    inside the core) only: one replay, one arithmetic."""
    assert len(list(SRC.rglob("*.py"))) > 50  # the package was read
    assert _applies_outside_core() == []
