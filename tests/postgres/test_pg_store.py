"""The engine on PostgreSQL: migrations, restart, idempotency across restarts, audit.

Each test runs in its own schema (see conftest.py), so they may run in parallel.
"""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.cli import app
from lijian.clock import parse_clock
from lijian.core.entries import HoldPlaced, encode
from lijian.core.order import RefundRequest
from lijian.engine import Engine
from lijian.store import open_store
from lijian.store.migrations import load_migrations
from lijian.store.postgres import PostgresStore
from lijian.store.sqlite import StoreError
from tests.postgres.pgutil import execute
from tests.support import CID, catalog, order, settings

pytestmark = pytest.mark.xdist_group("postgres")


def open_engine(url, start="2025-02-12T10:00:00+08:00", s=None):
    return Engine([s or settings()], url, parse_clock(f"manual:{start}"))


def test_concurrent_starters_apply_each_migration_exactly_once(pg_url):
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start():
        try:
            stores.append(PostgresStore(pg_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    versions = [m.version for m in load_migrations()]
    assert sorted(v for s in stores for v in s.migrated) == versions  # once, by one starter
    rows = execute(pg_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == versions
    for s in stores:
        s.close()
    again = PostgresStore(pg_url)
    assert again.migrated == []  # idempotent
    again.close()


def test_open_store_picks_the_adapter_from_the_db_argument(pg_url, tmp_path):
    pg = open_store(pg_url)
    lite = open_store(tmp_path / "x.db")
    try:
        assert type(pg).__name__ == "PostgresStore"
        assert type(lite).__name__ == "SqliteStore"
    finally:
        pg.close()
        lite.close()


def test_state_survives_a_restart_and_an_idempotent_replay_still_replays(pg_url):
    e = open_engine(pg_url)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    first = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
    assert first.status == 201
    rid = first.body["id"]
    Blocking(e).capture(rid)
    Blocking(e).refund(rid, RefundRequest("rf", payable_fen=1_000), "unionpay", "K2", "fp2")
    before = (Blocking(e).status(CID), Blocking(e).person(CID, "p-1"))
    e.close()

    e = open_engine(pg_url)
    try:
        # a graceful stop wrote a snapshot: nothing left to replay
        assert e.snapshot_seq >= 4 and e.recovered_entries == 0
        assert (Blocking(e).status(CID), Blocking(e).person(CID, "p-1")) == before
        again = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
        assert again.replayed and again.status == 201 and again.body == first.body
        other = Blocking(e).redeem(order(2), "unionpay", "K1", "fp-other")
        assert other.status == 422 and other.body["code"] == "idempotency_key_reused"
        assert Blocking(e).redeem(order(1), "unionpay", "K3", "fp3").status == 409
        assert Blocking(e).redeem(order(9, person="p-2"), "unionpay", "K9", "fp9").status == 201
    finally:
        e.close()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
    assert rep.entries == 5  # open, hold, capture, refund, hold
    execute(pg_url, "DELETE FROM snapshots")  # force a replay from zero
    e = open_engine(pg_url)
    try:
        assert e.recovered_entries == 5
        assert Blocking(e).redeem(order(1), "unionpay", "K1", "fp1").body == first.body
    finally:
        e.close()


def test_a_declined_request_writes_nothing(pg_url):
    e = open_engine(pg_url, start="2025-02-12T09:00:00+08:00")
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        seq = e.store.last_seq
        out = Blocking(e).redeem(order(1), "unionpay", "K1", "fp1")
        assert out.status == 200 and out.body["reasons"][0]["code"] == "tranche_not_open"
        assert e.store.last_seq == seq
    finally:
        e.close()


def test_changed_money_rules_under_a_running_ledger_are_refused(pg_url):
    open_engine(pg_url).close()
    with pytest.raises(StoreError):
        open_engine(pg_url, s=settings(limits={"person_savings_cap_fen": 999_999}))


def test_a_large_catalogue_round_trips_in_pages(pg_url):
    rows = [("jd", f"JD-{i}", "fresh_food") for i in range(120_000)]
    rows.append(("jd", "JD-7", "beauty_skincare"))  # the last row for a key wins
    e = open_engine(pg_url)
    try:
        assert Blocking(e).catalog_upsert(rows) == len(rows)
    finally:
        e.close()
    store = PostgresStore(pg_url)
    try:
        got = dict(((p, s), c) for p, s, c in store.catalog_rows())
    finally:
        store.close()
    assert len(got) == 120_000 and got[("jd", "JD-7")] == "beauty_skincare"


def test_audit_finds_a_tampered_balance_a_deleted_entry_and_a_forged_one(pg_url):
    e = open_engine(pg_url)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    outs = [
        Blocking(e).redeem(order(i, person=f"p-{i}"), "unionpay", f"K{i}", "f") for i in range(5)
    ]
    Blocking(e).capture(outs[0].body["id"])
    e.close()
    assert audit_db(pg_url).ok

    execute(pg_url, "UPDATE persons SET used_fen = used_fen + 1 WHERE person_id = 'p-0'")
    rep = audit_db(pg_url)
    assert not rep.ok and any("p-0" in v for v in rep.violations)
    execute(pg_url, "UPDATE persons SET used_fen = used_fen - 1 WHERE person_id = 'p-0'")
    assert audit_db(pg_url).ok

    execute(pg_url, "DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)")
    rep = audit_db(pg_url)
    assert not rep.ok and any("stored" in v for v in rep.violations)

    forged = HoldPlaced(
        0, CID, "rd_x1", "2025-02-12", "p-1", "jd", "O-x", 10**7, 10**6, False, 0, [], "c", "k", "f"
    )
    execute(pg_url, "INSERT INTO entries (body) VALUES (%s)", (encode(forged),))
    rep = audit_db(pg_url)
    assert not rep.ok and "replay" in rep.checks[-1]["name"]


def test_the_audit_command_takes_a_postgresql_url(pg_url):
    e = open_engine(pg_url)
    Blocking(e).catalog_upsert(list(catalog().rows()))
    assert Blocking(e).redeem(order(1), "unionpay", "K1", "fp1").status == 201
    e.close()
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "--db", pg_url])
    assert ok.exit_code == 0, ok.output
    assert "0 violation(s)" in ok.output
    execute(pg_url, "UPDATE balances SET value = value + 1 WHERE key LIKE %s", ("%/held",))
    bad = runner.invoke(app, ["audit", "--db", pg_url, "--json"])
    assert bad.exit_code == 1 and '"ok": false' in bad.output


def test_a_deposed_sequencer_commits_nothing_and_says_so(pg_url):
    """After a takeover the old holder's fence stops its commits and snapshots: nothing
    of the batch is written, and the error names both epochs."""
    from lijian.cluster.lease import Deposed, Lease

    e = open_engine(pg_url)
    lease = Lease(pg_url, "h-1", "127.0.0.1:1")
    try:
        assert lease.acquire(wait_s=5) == 1
        e.store.fence = lease.fence
        Blocking(e).catalog_upsert(list(catalog().rows()))
        assert Blocking(e).redeem(order(1), "unionpay", "K1", "fp1").status == 201
        seq = e.store.last_seq
        execute(pg_url, "UPDATE sequencer_lease SET epoch = epoch + 1")  # a takeover
        hold = HoldPlaced(0, CID, "r-x", "2025-02-12", "p-9", "jd", "o-x", 1_000, 150, False, 0,
                          [("SKU-1", 1, 1_000)], "unionpay", "K-x", "fp-x")  # fmt: skip
        with pytest.raises(Deposed, match=r"epoch 2 \(this sequencer held 1\)"):
            e.store.commit_batch([hold], [("k", 1)], [(CID, "p-9", 0, 150)])
        with pytest.raises(Deposed):
            e.store.save_snapshot(seq, b"x")
        assert execute(pg_url, "SELECT max(seq), count(*) FROM entries") == [(seq, seq)]
        parts = execute(pg_url, "SELECT count(*) FROM snapshot_parts WHERE seq = %s", (seq,))
        assert parts == [(0,)]
        assert execute(pg_url, "SELECT count(*) FROM persons WHERE person_id = 'p-9'") == [(0,)]
        assert execute(pg_url, "SELECT count(*) FROM balances WHERE key = 'k'") == [(0,)]
        assert e.store.last_seq == seq  # the store's view did not move either
    finally:
        e.store.fence = None
        lease.release()
        e.close()


def test_a_snapshot_in_parts_is_read_whole_and_an_unfinished_one_is_not(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lijian.store.snapshot_parts as parts

    monkeypatch.setattr(parts, "PART_BYTES", 1_000)
    store = PostgresStore(pg_url)
    try:
        body = bytes(range(256)) * 39  # 10 parts, the last one short
        store.save_snapshot(7, body)
        assert store.latest_snapshot() == (7, body)
        store.save_snapshot_part(9, 0, b"newer, unfinished")  # its writer died mid-way
        assert store.latest_snapshot() == (7, body)
        store.save_snapshot(11, b"x" * 2_500)  # complete: the older ones are dropped
        assert store.latest_snapshot() == (11, b"x" * 2_500)
        assert execute(pg_url, "SELECT seq, count(*) FROM snapshot_parts GROUP BY seq") == [(11, 3)]
    finally:
        store.close()
