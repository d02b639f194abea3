"""Several engines ("nodes") sharing one PostgreSQL database and one campaign.

In-process here (two ``EscrowEngine`` objects on one schema); tests/postgres/
test_torture.py does the same with processes, SIGKILL and server restarts.
"""

from __future__ import annotations

import pytest

from lijian.audit import audit_db
from lijian.clock import parse_clock
from lijian.core.escrow import EscrowPolicy
from lijian.escrow.node import EscrowEngine
from tests.postgres.pgutil import execute
from tests.support import CID, catalog, order, settings

pytestmark = pytest.mark.xdist_group("postgres")
DAY = "2025-02-12"
TRANCHE_FEN = 100_000  # 17 equal days
POLICY = EscrowPolicy(min_slice_fen=5_000, max_slice_fen=40_000, lease_ttl_ms=2_000)
HOUSEKEEPING_WAIT_S = 1.5  # more than one housekeeping period (node.HOUSEKEEPING_S)


def node(url, node_id, nodes=2, cap_fen=150_000, start="2025-02-12T10:00:00+08:00"):
    s = settings(
        campaign={"budget_fen": TRANCHE_FEN * 17},
        limits={"person_savings_cap_fen": cap_fen},
    )
    e = EscrowEngine(
        [s], url, parse_clock(f"manual:{start}"), node_id=node_id, nodes=nodes, policy=POLICY
    )
    e.catalog_upsert_sync(list(catalog().rows()))
    return e


def pool_and_leases(url):
    (rem,) = execute(url, "SELECT remaining_fen FROM pools WHERE day = %s", (DAY,))[0]
    live = execute(
        url,
        "SELECT COALESCE(sum(taken_fen + credited_fen - charged_fen - returned_fen), 0)"
        " FROM leases WHERE state = 'live'",
    )[0][0]
    return int(rem), int(live)


def test_two_nodes_sell_the_tranche_out_exactly_and_never_overspend(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    granted = 0
    try:
        for i in range(40):
            for n, e in (("a", a), ("b", b)):
                o = order(f"{n}{i}", person=f"p-{n}{i}")
                out = e.redeem_sync(o, "unionpay", f"K{n}{i}", f"f{n}{i}")
                if out.status == 201:
                    granted += out.body["discount_fen"]
                else:
                    assert out.body["reasons"][0]["code"] == "sold_out"
        assert TRANCHE_FEN - 3_720 < granted <= TRANCHE_FEN  # sold out to the last order
        rem, live = pool_and_leases(pg_url)
        assert rem + live + granted == TRANCHE_FEN  # no fen lost or created
    finally:
        a.close()
        b.close()
    rem, live = pool_and_leases(pg_url)
    assert live == 0 and rem + granted == TRANCHE_FEN  # leases given back at close
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
    execute(pg_url, "UPDATE pools SET remaining_fen = remaining_fen + 1")  # one fen created
    rep = audit_db(pg_url)
    assert not rep.ok and any("pool" in v for v in rep.violations)


def test_refunds_on_any_node_follow_the_redemptions_whole_history(pg_url):
    # R18's cumulative floor needs every earlier refund, wherever it was recorded
    from lijian.core.order import RefundRequest

    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        rid = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f1").body["id"]
        assert a.capture_sync(rid).status == 200
        first = b.refund_sync(
            rid, RefundRequest("rf-1", payable_fen=10_000), "unionpay", "R1", "r1"
        )
        assert first.status == 201 and first.body["kind"] == "partial"
        # the same request on the other node replays b's answer, byte for byte
        again = a.refund_sync(
            rid, RefundRequest("rf-1", payable_fen=10_000), "unionpay", "R1", "r1"
        )
        assert (again.status, again.body, again.replayed) == (201, first.body, True)
        reused = a.refund_sync(rid, RefundRequest("rf-1", payable_fen=1), "unionpay", "R2", "r2")
        assert reused.status == 409  # refund id already recorded (by b)
        too_much = a.refund_sync(
            rid, RefundRequest("rf-2", payable_fen=24_800), "unionpay", "R3", "r"
        )
        assert too_much.status == 422  # 10,000 of 24,800 were refunded on b already
        rest = a.refund_sync(rid, RefundRequest("rf-3", payable_fen=14_800), "unionpay", "R4", "r4")
        assert rest.status == 201
        view = b.redemption(rid)
        assert view["status"] == "refunded" and len(view["refunds"]) == 2
        assert sum(f["clawback_fen"] for f in view["refunds"]) == 3_720
    finally:
        a.close()
        b.close()
    assert execute(pg_url, "SELECT status FROM redemptions WHERE id = %s", (rid,)) == [
        ("refunded",)
    ]
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


@pytest.mark.parametrize("recorder_dies", [True, False])
def test_a_quota_restore_is_applied_once_by_whichever_node_runs_at_midnight(pg_url, recorder_dies):
    from lijian.core.order import RefundRequest

    a, b = node(pg_url, "a", cap_fen=3_720), node(pg_url, "b", cap_fen=3_720)
    try:
        rid = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f1").body["id"]
        a.capture_sync(rid)
        full = a.refund_sync(rid, RefundRequest("rf", payable_fen=24_800), "unionpay", "R", "r")
        assert full.body["quota_restore_fen"] == 3_720  # next day (the Chengdu rule)
        # the person is at the cap until midnight, on either node
        assert b.redeem_sync(order(2, person="p-1"), "unionpay", "K2", "f").status == 200
        if recorder_dies:
            a.close()  # the node that recorded the refund is gone before midnight
        # the next day, 10:00 (the clock is shared: a, if alive, runs at midnight too)
        b.set_clock_sync(advance_ms=24 * 3_600_000)
        import time

        time.sleep(HOUSEKEEPING_WAIT_S)  # b's sweep finds the due restore
        assert b.redeem_sync(order(3, person="p-1"), "unionpay", "K3", "f").status == 201
    finally:
        a.close()
        b.close()
    a2 = node(pg_url, "a", cap_fen=3_720, start="2025-02-13T10:00:01+08:00")  # replays
    a2.close()
    restores = execute(pg_url, "SELECT state FROM restores")
    assert restores == [("done",)]
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
    n = sum(1 for (body,) in execute(pg_url, "SELECT body FROM entries") if b"restore" in body)
    assert n == 1


def test_a_persons_cap_holds_across_nodes(pg_url):
    a, b = node(pg_url, "a", cap_fen=5_000), node(pg_url, "b", cap_fen=5_000)
    try:
        first = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f1")
        assert first.status == 201 and first.body["discount_fen"] == 3_720
        second = b.redeem_sync(order(2, person="p-1"), "unionpay", "K2", "f2")
        assert second.status == 201 and second.body["discount_fen"] == 1_280  # the rest
        third = a.redeem_sync(order(3, person="p-1"), "unionpay", "K3", "f3")
        assert third.status == 200
        assert third.body["reasons"][0]["code"] == "person_cap_reached"
        # the void on b of a's hold gives the quota back to the person, on every node
        assert b.void_sync(first.body["id"]).body["status"] == "voided"
        again = a.redeem_sync(order(4, person="p-1"), "unionpay", "K4", "f4")
        assert again.status == 201 and again.body["discount_fen"] == 3_720
        # the person's quota reads the same on both nodes (b never saw order 4)
        assert a.person_sync(CID, "p-1") == b.person_sync(CID, "p-1")
        assert b.person_sync(CID, "p-1")["held_fen"] == 1_280 + 3_720
    finally:
        a.close()
        b.close()
    assert audit_db(pg_url).ok


def test_idempotency_and_order_uniqueness_hold_across_nodes(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        first = a.redeem_sync(order(1), "unionpay", "K1", "fp1")
        assert first.status == 201
        again = b.redeem_sync(order(1), "unionpay", "K1", "fp1")
        assert again.status == 201 and again.replayed and again.body == first.body
        reused = b.redeem_sync(order(2), "unionpay", "K1", "fp-other")
        assert reused.status == 422 and reused.body["code"] == "idempotency_key_reused"
        dup = b.redeem_sync(order(1), "unionpay", "K9", "fp9")
        assert dup.status == 409 and dup.body["code"] == "order_already_redeemed"
    finally:
        a.close()
        b.close()
    assert execute(pg_url, "SELECT count(*) FROM redemptions")[0][0] == 1
    assert audit_db(pg_url).ok


def test_captures_and_voids_of_another_nodes_redemption_go_through_its_row(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        ra = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f1").body["id"]
        rb = b.redeem_sync(order(2, person="p-2"), "unionpay", "K2", "f2").body["id"]
        assert b.capture_sync(ra).body["status"] == "captured"
        assert a.void_sync(rb).body["status"] == "voided"
        assert a.call(a.redemption, ra)["status"] == "captured"  # read through the row
        assert b.capture_sync(ra).status == 200  # idempotent, from either node
        assert a.capture_sync(ra).status == 200
        late = b.capture_sync(rb)
        assert late.status == 409 and late.body["code"] == "hold_not_active"
        assert a.void_sync(ra).body["code"] == "already_captured"
    finally:
        a.close()
        b.close()
    rows = dict(execute(pg_url, "SELECT id, status FROM redemptions"))
    assert rows == {ra: "captured", rb: "voided"}
    assert audit_db(pg_url).ok


def test_a_restarted_node_recovers_from_the_global_log_and_adopts_its_lease(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    ra = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f1").body["id"]
    b.redeem_sync(order(2, person="p-2"), "unionpay", "K2", "f2")
    # a stops without giving its lease back (as if killed): stop the writer only
    a.call(a.writer.stop)
    a.pg.close()
    a2 = node(pg_url, "a")
    try:
        assert a2.esc.unspent_fen(f"{CID}\x1f{DAY}") > 0  # adopted, not waiting the timeout
        assert a2.redeem_sync(order(1), "unionpay", "K1", "f1").body["id"] == ra
        assert b.capture_sync(ra).status == 200
        assert a2.redeem_sync(order(3, person="p-3"), "unionpay", "K3", "f3").status == 201
    finally:
        a2.close()
        b.close()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


def test_the_first_batch_after_the_opening_takes_a_slice_and_grants(pg_url):
    # regression: the view opened the day inside the batch, after the lease sync, and
    # the core then granted from the whole tranche instead of the lease
    a = node(pg_url, "a", start="2025-02-12T09:59:59+08:00")
    b = node(pg_url, "b", start="2025-02-12T09:59:59+08:00")
    try:
        a.set_clock_sync(advance_ms=1_000)  # the clock is shared: b follows
        outs = a.redeem_many_sync(
            [(order(i, person=f"p-{i}"), "unionpay", f"K{i}", "f") for i in range(5)]
        )
        assert [o.status for o in outs] == [201] * 5
        assert b.redeem_sync(order(9, person="p-9"), "unionpay", "K9", "f").status == 201
        rem, live = pool_and_leases(pg_url)
        assert rem + live + 6 * 3_720 == TRANCHE_FEN
    finally:
        a.close()
        b.close()
    assert audit_db(pg_url).ok


def test_nodes_started_days_late_write_the_missed_days_first(pg_url):
    # regression: housekeeping took a day with no pool row for closed, so a later take
    # skipped its catch-up and the global log began with today's open (audit refused it)
    import time

    start = "2025-02-14T10:00:00+08:00"  # the third day: two days passed unseen
    a, b = node(pg_url, "a", start=start), node(pg_url, "b", start=start)
    try:
        time.sleep(HOUSEKEEPING_WAIT_S)  # let housekeeping run before any take
        outs = [
            e.redeem_sync(order(f"{n}{i}", person=f"p-{n}{i}"), "unionpay", f"K{n}{i}", "f")
            for i in range(3)
            for n, e in (("a", a), ("b", b))
        ]
        assert [o.status for o in outs] == [201] * 6
    finally:
        a.close()
        b.close()
    days = [d for (d,) in execute(pg_url, "SELECT day FROM pools ORDER BY day")]
    assert days == ["2025-02-12", "2025-02-13", "2025-02-14"]
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


def test_nodes_running_through_midnight_close_each_day_once_and_roll_over(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        for day in range(3):
            for n, e in (("a", a), ("b", b)):
                o = order(f"{n}{day}", person=f"p-{n}{day}")
                assert e.redeem_sync(o, "unionpay", f"K{n}{day}", "f").status == 201
            a.set_clock_sync(advance_ms=24 * 3_600_000)  # the clock is shared: b follows
        import time

        time.sleep(HOUSEKEEPING_WAIT_S)  # leases of closed days go back, pools close
    finally:
        a.close()
        b.close()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
    closed = execute(pg_url, "SELECT count(*) FROM pools WHERE state = 'closed'")[0][0]
    assert closed == 3


def test_a_starved_node_drains_the_others_slices_first_come_first_served(pg_url):
    # a takes a slice and goes quiet; b's traffic empties the pool: b must not answer
    # sold_out while a still holds money (the pool drains: a gives its slice back)
    a, b = node(pg_url, "a"), node(pg_url, "b")
    fits = TRANCHE_FEN // 3_720
    try:
        assert a.redeem_sync(order("a0", person="p-a0"), "unionpay", "Ka0", "f").status == 201
        assert a.esc.unspent_fen(f"{CID}\x1f{DAY}") > 3_720  # a holds more than one grant
        outs = [
            b.redeem_sync(order(f"b{i}", person=f"p-b{i}"), "unionpay", f"Kb{i}", "f").status
            for i in range(fits + 3)
        ]
        assert outs == [201] * (fits - 1) + [200] * 4  # every fitting grant, then sold out
        assert execute(pg_url, "SELECT bool_and(draining) FROM pools")[0][0] is True
        rem, live = pool_and_leases(pg_url)
        assert rem + live == TRANCHE_FEN - fits * 3_720
    finally:
        a.close()
        b.close()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


def test_two_busy_nodes_sell_out_to_the_last_fitting_grant(pg_url):
    # both nodes grant in batches at once until the tranche is gone: the drain and the
    # smallest-grant check leave less than one discount unsold, whichever node is short
    import threading

    a, b = node(pg_url, "a"), node(pg_url, "b")
    fits = TRANCHE_FEN // 3_720
    statuses: list[int] = []

    def rush(n: str, e: EscrowEngine) -> None:
        for j in range(6):
            batch = [
                (order(f"{n}{j}-{i}", person=f"p-{n}{j}-{i}"), "unionpay", f"K{n}{j}-{i}", "f")
                for i in range(5)
            ]
            statuses.extend(o.status for o in e.redeem_many_sync(batch))

    try:
        threads = [threading.Thread(target=rush, args=(n, e)) for n, e in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(201) == fits and statuses.count(200) == 60 - fits
    finally:
        a.close()
        b.close()
    rem, live = pool_and_leases(pg_url)
    assert live == 0 and rem == TRANCHE_FEN - fits * 3_720
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


def test_a_manual_clock_moved_on_one_node_moves_for_all(pg_url):
    a = node(pg_url, "a", start="2025-02-12T09:59:59+08:00")
    b = node(pg_url, "b", start="2025-02-12T09:59:59+08:00")
    try:
        before = b.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f")
        assert before.body["reasons"][0]["code"] == "tranche_not_open"
        assert a.set_clock_sync(advance_ms=1_000) == b.clock.now_ms() + 1_000
        # b has not been told: its next batch reads the shared clock first
        assert b.redeem_sync(order(2, person="p-2"), "unionpay", "K2", "f").status == 201
        assert b.clock.now_ms() == a.clock.now_ms()
        with pytest.raises(Exception, match="only moves forward"):
            b.set_clock_sync(target_ms=a.clock.now_ms() - 1)
        # a node (re)started with an earlier --clock follows the shared one
        c = node(pg_url, "c", nodes=3, start="2025-02-12T09:00:00+08:00")
        assert c.clock.now_ms() == a.clock.now_ms()
        c.close()
    finally:
        a.close()
        b.close()
    assert audit_db(pg_url).ok


def test_a_catalogue_upload_on_one_node_reaches_the_others(pg_url):
    import time

    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        new = order(1, person="p-1", sku="NEW-1")
        assert b.redeem_sync(new, "unionpay", "K1", "f").body["reasons"][0]["code"] == (
            "not_campaign_goods"
        )
        category = a.catalog.category_of("jd", "JD-1")
        a.catalog_upsert_sync([("jd", "NEW-1", category)])
        deadline = time.monotonic() + 5 * HOUSEKEEPING_WAIT_S
        while b.catalog.category_of("jd", "NEW-1") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        out = b.redeem_sync(order(2, person="p-2", sku="NEW-1"), "unionpay", "K2", "f")
        assert out.status == 201, out.body
    finally:
        a.close()
        b.close()


def test_every_node_shows_the_global_campaign_status(pg_url):
    # each node's view holds only its own grants; the status comes from the rows
    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        assert a.status_sync(CID)["today"]["remaining_fen"] == TRANCHE_FEN  # no take yet
        ra = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f").body["id"]
        b.redeem_sync(order(2, person="p-2"), "unionpay", "K2", "f")
        rb = b.redeem_sync(order(3, person="p-3"), "unionpay", "K3", "f").body["id"]
        b.capture_sync(ra)
        a.void_sync(rb)
        sa, sb = a.status_sync(CID), b.status_sync(CID)
        assert sa == sb
        assert (sa["held_fen"], sa["granted_fen"]) == (3_720, 3_720)
        today = sa["today"]
        assert today["released_fen"] == TRANCHE_FEN
        assert today["remaining_fen"] == TRANCHE_FEN - 2 * 3_720
        assert (today["held_fen"], today["granted_fen"]) == (3_720, 3_720)
        assert a.call(a.public_status, CID)["today"]["remaining_fen"] == today["remaining_fen"]
    finally:
        a.close()
        b.close()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
    execute(pg_url, "UPDATE day_figures SET captured_fen = captured_fen + 1 WHERE node_id = 'a'")
    rep = audit_db(pg_url)
    assert not rep.ok and any("day figures" in v for v in rep.violations)


def test_settlement_and_audit_on_any_node_cover_every_nodes_redemptions(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    try:
        ra = a.redeem_sync(order(1, person="p-1"), "unionpay", "K1", "f").body["id"]
        rb = b.redeem_sync(order(2, person="p-2"), "unionpay", "K2", "f").body["id"]
        a.capture_sync(ra)
        b.capture_sync(rb)
        for e in (a, b):
            report = e.call(e.settlement_report, CID, DAY)
            assert report["totals"]["count"] == 2
            assert report["totals"]["discount_fen"] == 2 * 3_720
            audit = e.call(e.audit_report, CID)
            assert audit["ok"] and audit["entries"] >= 5, audit
    finally:
        a.close()
        b.close()


def test_the_audit_is_clean_while_nodes_keep_writing(pg_url):
    # entries commit out of seq order and rows change under a reader: the audit reads
    # entries and rows in one snapshot, so it never reports a difference that is not there
    import threading

    a, b = node(pg_url, "a", nodes=2), node(pg_url, "b", nodes=2)
    stop = threading.Event()

    def rush(n: str, e: EscrowEngine) -> None:
        j = 0
        while not stop.is_set() and j < 200:
            batch = [
                (order(f"{n}{j}-{i}", person=f"p-{n}{j}-{i}"), "unionpay", f"K{n}{j}-{i}", "f")
                for i in range(4)
            ]
            for o in e.redeem_many_sync(batch):
                if o.status == 201 and j % 2:
                    e.capture_sync(o.body["id"])
            j += 1

    threads = [threading.Thread(target=rush, args=(n, e)) for n, e in (("a", a), ("b", b))]
    try:
        for t in threads:
            t.start()
        reports = [audit_db(pg_url) for _ in range(6)]
    finally:
        stop.set()
        for t in threads:
            t.join()
        a.close()
        b.close()
    assert all(r.ok for r in reports), [r.violations for r in reports if not r.ok]
    assert reports[-1].entries > reports[0].entries > 0  # they ran while entries grew


def test_a_node_keeps_serving_past_the_snapshot_interval(pg_url, monkeypatch):
    # regression: a node never snapshots, and the writer's loop asked again and again
    # without yielding once SNAPSHOT_EVERY_ENTRIES entries were written: the node hung
    import threading

    import lijian.writer

    monkeypatch.setattr(lijian.writer, "SNAPSHOT_EVERY_ENTRIES", 3)
    a = node(pg_url, "a", nodes=1)
    done: list[int] = []

    def rush() -> None:
        for i in range(10):
            o = order(i, person=f"p-{i}")
            done.append(a.redeem_sync(o, "unionpay", f"K{i}", "f").status)

    t = threading.Thread(target=rush, daemon=True)
    t.start()
    t.join(30)
    try:
        assert done == [201] * 10, done
    finally:
        if not t.is_alive():
            a.close()
