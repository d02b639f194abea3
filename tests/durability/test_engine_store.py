"""The engine on a real SQLite file: restart, idempotency across restarts, audit."""

import sqlite3

import pytest

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import RefundRequest
from lijian.core.settings import SettingsError
from lijian.engine import Engine
from lijian.inputs import load_settings_file
from lijian.store.sqlite import SqliteStore, StoreError
from tests.support import CAMPAIGN_FILE, CID, catalog, order, settings


@pytest.fixture
def db(tmp_path):
    return tmp_path / "lijian.db"


def open_engine(db, start="2025-02-12T10:00:00+08:00", s=None):
    e = Engine([s or settings()], db, parse_clock(f"manual:{start}"))
    return e


def test_state_survives_a_restart_and_an_idempotent_replay_still_replays(db):
    e = open_engine(db)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    first = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
    assert first.status == 201
    rid = first.body["id"]
    Blocking(e).capture(rid)
    Blocking(e).refund(rid, RefundRequest("rf", payable_fen=1_000), "unionpay", "K2", "fp2")
    before = (Blocking(e).status(CID), Blocking(e).person(CID, "p-1"))
    e.close()

    e = open_engine(db)
    try:
        # a graceful stop wrote a snapshot: nothing left to replay
        assert e.snapshot_seq >= 4 and e.recovered_entries == 0
        assert (Blocking(e).status(CID), Blocking(e).person(CID, "p-1")) == before
        again = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
        assert again.replayed and again.status == 201 and again.body == first.body
        other = Blocking(e).redeem(order(2), "unionpay", "K1", "fp-other")
        assert other.status == 422 and other.body["code"] == "idempotency_key_reused"
        assert Blocking(e).redeem(order(1), "unionpay", "K3", "fp3").status == 409
        # the catalogue was stored too
        assert Blocking(e).redeem(order(9, person="p-2"), "unionpay", "K9", "fp9").status == 201
    finally:
        e.close()
    assert audit_db(db).ok


def test_a_declined_request_writes_nothing(db):
    e = open_engine(db, start="2025-02-12T09:00:00+08:00")
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        seq = e.store.last_seq
        out = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
        assert out.status == 200 and out.body["reasons"][0]["code"] == "tranche_not_open"
        assert e.store.last_seq == seq
    finally:
        e.close()


def test_changed_money_rules_under_a_running_ledger_are_refused(db):
    open_engine(db).close()
    with pytest.raises(StoreError):
        open_engine(db, s=settings(limits={"person_savings_cap_fen": 999_999}))


def test_audit_finds_a_tampered_balance_and_a_deleted_entry(db):
    e = open_engine(db)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    outs = [
        Blocking(e).redeem(order(i, person=f"p-{i}"), "unionpay", f"K{i}", "f") for i in range(5)
    ]
    ids = [o.body["id"] for o in outs]
    Blocking(e).capture(ids[0])
    e.close()
    assert audit_db(db).ok
    con = sqlite3.connect(db)
    con.execute("UPDATE persons SET used_fen = used_fen + 1 WHERE person_id = 'p-0'")
    con.commit()
    rep = audit_db(db)
    assert not rep.ok and any("p-0" in v for v in rep.violations)
    con.execute("UPDATE persons SET used_fen = used_fen - 1 WHERE person_id = 'p-0'")
    con.execute("DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)")  # the capture
    con.commit()
    con.close()
    rep = audit_db(db)
    assert not rep.ok and any("stored" in v for v in rep.violations)


def test_audit_finds_a_forged_entry_that_breaks_the_cap(db):
    from lijian.core.entries import HoldPlaced, encode

    e = open_engine(db)
    e.close()
    con = sqlite3.connect(db)
    forged = HoldPlaced(
        0, CID, "rd_x1", "2025-02-12", "p-1", "jd", "O-x", 10**7, 10**6, False, 0, [], "c", "k", "f"
    )
    con.execute("INSERT INTO entries (seq, body) VALUES (1000, ?)", (encode(forged),))
    con.commit()
    con.close()
    rep = audit_db(db)
    assert not rep.ok and "replay" in rep.checks[-1]["name"]


def test_the_seed_file_is_valid_and_a_missing_file_is_a_settings_error(tmp_path):
    assert load_settings_file(CAMPAIGN_FILE).id == CID
    with pytest.raises(SettingsError):
        load_settings_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[campaign\n")
    with pytest.raises(SettingsError) as e:
        load_settings_file(bad)
    assert "not valid TOML" in str(e.value)


def test_a_snapshot_restores_exactly_what_a_replay_from_zero_gives(db):
    from lijian.core.invariants import balances

    e = open_engine(db)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    outs = Blocking(e).redeem_many(
        [(order(i, person=f"p-{i % 7}"), "unionpay", f"K{i}", f"f{i}") for i in range(300)]
    )
    ids = [o.body["id"] for o in outs if o.status == 201]
    Blocking(e).run_many([("capture", r) for r in ids[::2]] + [("void", r) for r in ids[1::4]])
    Blocking(e).refund(ids[0], RefundRequest("rf", payable_fen=5_000), "unionpay", "RK", "rfp")
    e.close()  # snapshot
    con = sqlite3.connect(db)
    con.execute("DELETE FROM snapshots")  # force a replay from zero
    con.commit()
    con.close()
    replayed = open_engine(db, start="2025-02-12T10:00:01+08:00")
    assert replayed.recovered_entries > 300
    want = replayed.call(lambda: (balances(replayed.ledger), replayed.ledger.redemptions.copy()))
    replayed.close()  # writes a new snapshot
    snap = open_engine(db, start="2025-02-12T10:00:01+08:00")
    try:
        assert snap.recovered_entries == 0
        got = snap.call(lambda: (balances(snap.ledger), snap.ledger.redemptions.copy()))
        assert got == want
        replay = Blocking(snap).refund(
            ids[0], RefundRequest("rf", payable_fen=5_000), "unionpay", "RK", "rfp"
        )
        assert replay.replayed and replay.body["refund_id"] == "rf"
    finally:
        snap.close()
    assert audit_db(db).ok


def test_audit_finds_a_snapshot_that_disagrees_with_the_entries(db):
    from lijian.core.ledger import Ledger
    from lijian.core.snapshot import encode_snapshot, restore_snapshot

    e = open_engine(db)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    Blocking(e).capture(Blocking(e).redeem(order(1), "unionpay", "K", "f").body["id"])
    e.close()
    assert audit_db(db).ok
    store = SqliteStore(db)
    stored = store.latest_snapshot()
    assert stored is not None
    seq, blob = stored
    forged = Ledger([settings()])
    restore_snapshot(forged, blob)
    forged.books[CID].persons["p-1"].used_fen = 0  # forget what p-1 used
    store.save_snapshot(seq, encode_snapshot(forged, seq))
    store.close()
    rep = audit_db(db)
    assert not rep.ok and any("snapshot" in v for v in rep.violations)


def test_bad_calls_raise_typed_errors_and_change_nothing(db):
    from lijian.core.errors import Conflict, InvalidRequest, RedemptionNotFound

    e = open_engine(db)
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        rid = Blocking(e).redeem(order(1), "unionpay", "K", "f").body["id"]
        seq = e.store.last_seq
        before = (Blocking(e).status(CID), Blocking(e).person(CID, "p-1"))
        assert Blocking(e).capture("rd_nope").status == 404
        with pytest.raises(RedemptionNotFound):
            e.call(e.ledger.redemption, "rd_nope")
        with pytest.raises(Conflict) as backwards:
            Blocking(e).set_clock(target_ms=0)  # the manual clock only moves forward
        assert backwards.value.code == "clock_backwards"
        bad = RefundRequest("rf", payable_fen=1)
        assert Blocking(e).refund(rid, bad, "unionpay", "RK", "x").status == 409  # not captured
        with pytest.raises(InvalidRequest):
            e.call(e.evaluate, order(2, price_fen=1, quantity=1, platform_discount_fen=5))
        assert e.store.last_seq == seq
        assert (Blocking(e).status(CID), Blocking(e).person(CID, "p-1")) == before
    finally:
        e.close()
