"""The detectors over the ledger (core/detectors.py): each fires one past its threshold
and not at it, names the persons, redemptions and figures that raised it, never twice for
the same evidence; the one replay and a snapshot rebuild the same flags and indices, and
the audit is clean."""

from __future__ import annotations

from typing import Any

import msgspec

from lijian.core.entries import AnyEntry, HoldPlaced, RiskFlagged, RiskNoted, encode
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Address, Person
from lijian.core.replay import replay
from lijian.core.settings import SettingsError
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.status import FlagCode
from tests.support import Desk, order, settings

DAY = "2025-02-12"


def desk(**risk: Any) -> tuple[Desk, list[AnyEntry]]:
    d = Desk(settings(risk=risk), start="2025-02-12 10:00")
    return d, d.ledger.take_pending()


def flags(entries: list[AnyEntry]) -> list[RiskFlagged]:
    return [e for e in entries if isinstance(e, RiskFlagged)]


def check_replay(d: Desk, log: list[AnyEntry]) -> None:
    """The one replay and a snapshot hold the writer's flags and indices; audit clean."""
    led = replay(d.settings, [encode(e) for e in log])
    assert check_invariants(led) == []
    assert led.risk.all() == d.ledger.risk.all()
    enc = msgspec.msgpack.encode
    assert enc(led.detectors.campaigns) == enc(d.ledger.detectors.campaigns)
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, len(log)))
    assert fresh.risk.all() == led.risk.all()
    assert enc(fresh.detectors.campaigns) == enc(led.detectors.campaigns)


def test_shared_device_flags_the_person_past_n_then_each_newcomer() -> None:
    d, log = desk(cluster_persons_max=2)
    rids = []
    for i in (1, 2):
        rids.append(d.granted(_with_device(order(i, person=f"p-{i}"), "dev-A")))
        got = d.ledger.take_pending()
        assert [type(e) for e in got] == [HoldPlaced, RiskNoted]
        log += got
    assert d.ledger.risk.count == 0  # two persons on one device: at N, no flag
    rids.append(d.granted(_with_device(order(3, person="p-3"), "dev-A")))
    got = d.ledger.take_pending()
    log += got
    (f,) = flags(got)
    assert (f.code, f.day, f.person_ids, f.redemption_ids) == (
        FlagCode.SHARED_IDENTITY_CLUSTER, DAY, ["p-1", "p-2", "p-3"], rids)  # fmt: skip
    assert f.figures == [("device_id:dev-A", "persons_sharing", 3),
                         ("device_id:dev-A", "cluster_persons_max", 2)]  # fmt: skip
    # The same person again on the same device: nothing new, no entry beyond the hold.
    d.granted(_with_device(order(4, person="p-3"), "dev-A"))
    got = d.ledger.take_pending()
    assert [type(e) for e in got] == [HoldPlaced]
    log += got
    # A fourth person: flagged alone (the first three were named already).
    r4 = d.granted(_with_device(order(5, person="p-4"), "dev-A"))
    got = d.ledger.take_pending()
    log += got
    (f,) = flags(got)
    assert (f.person_ids, f.redemption_ids) == (["p-4"], [r4])
    assert f.figures[0] == ("device_id:dev-A", "persons_sharing", 4)
    check_replay(d, log)


def test_shared_address_text() -> None:
    d, log = desk(cluster_persons_max=1)
    a = Address("510104", "addr-X")
    r1 = d.granted(order(1, person="p-1", delivery_address=a))
    r2 = d.granted(order(2, person="p-2", delivery_address=a))
    d.granted(order(3, person="p-3", delivery_address=Address("510104", "addr-Y")))
    log += d.ledger.take_pending()
    (f,) = flags(log)
    assert (f.person_ids, f.redemption_ids) == (["p-1", "p-2"], [r1, r2])
    assert f.figures[0] == ("address_text:addr-X", "persons_sharing", 2)
    check_replay(d, log)


def _with_device(o: Any, device: str) -> Any:
    return msgspec.structs.replace(o, person=Person(o.person.id, True, device_id=device))


def test_refund_then_rebuy_within_n_days() -> None:
    d, log = desk(refund_rebuy_days=3)
    r1 = d.granted(order(1, person="p-1"))
    r2 = d.granted(order(2, person="p-2"))
    d.capture(r1)
    d.capture(r2)
    d.move("2025-02-12 10:59:59")
    d.refund(r2, "f-2", payable_fen=24_800)
    d.move("2025-02-12 11:00")
    d.refund(r1, "f-1", payable_fen=24_800)
    log += d.ledger.take_pending()
    d.move("2025-02-15 11:00")  # exactly 3 days after p-1's refund, 3 days + 1 s after p-2's
    d.granted(order(3, person="p-2"))
    got = d.ledger.take_pending()
    assert flags(got) == []
    log += got
    r3 = d.granted(order(4, person="p-1"))
    got = d.ledger.take_pending()
    (f,) = flags(got)
    assert (f.code, f.day, f.person_ids, f.redemption_ids) == (
        FlagCode.REFUND_REBUY, "2025-02-15", ["p-1"], [r1, r3])  # fmt: skip
    assert f.figures == [("JD-1", "seconds_since_refund", 3 * 86_400)]
    log += got
    # The same refund raises no second flag.
    d.granted(order(5, person="p-1"))
    got = d.ledger.take_pending()
    assert flags(got) == []
    log += got
    check_replay(d, log)


def test_velocity_fires_at_n_plus_one_within_the_window() -> None:
    d, log = desk(velocity_redemptions_max=3, velocity_window_min=10)
    rids = []
    for i in range(3):
        rids.append(d.granted(order(i, person="p-1")))
        d.move(seconds=120)
    assert d.ledger.risk.count == 0
    # The first is 6 min old: a fourth within 10 min is one past N.
    rids.append(d.granted(order(3, person="p-1")))
    log += d.ledger.take_pending()
    (f,) = flags(log)
    assert (f.code, f.person_ids, f.redemption_ids) == (FlagCode.VELOCITY, ["p-1"], rids)
    assert f.figures == [("p-1", "redemptions", 4), ("p-1", "span_s", 360),
                         ("p-1", "velocity_window_min", 10)]  # fmt: skip
    # The burst is used up: the next one starts a new count.
    d.granted(order(4, person="p-1"))
    # Spread out: never more than 3 within 10 minutes.
    for i in range(5, 12):
        d.move(seconds=301)
        d.granted(order(i, person="p-2"))
    log += d.ledger.take_pending()
    assert d.ledger.risk.count == 1
    check_replay(d, log)


def test_category_bulk_beyond_factor_times_the_median() -> None:
    d, log = desk(category_bulk_factor=5, category_bulk_min_persons=3)
    for i in range(3):  # 24,800 fen each in home_textiles (JD-1)
        d.granted(order(i, person=f"p-{i}"))
    log += d.ledger.take_pending()
    # Median 24,800: its bucket's floor is 24,576 (quarter octaves); 5 x that = 122,880.
    d.granted(order(10, person="p-at", price_fen=123_880, quantity=1))  # payable 122,880
    got = d.ledger.take_pending()
    assert flags(got) == []
    log += got
    rid = d.granted(order(11, person="p-over", price_fen=123_881, quantity=1))
    got = d.ledger.take_pending()
    (f,) = flags(got)
    assert (f.code, f.person_ids, f.redemption_ids) == (FlagCode.CATEGORY_BULK, ["p-over"], [rid])
    assert f.figures == [("home_textiles", "person_spend_fen", 122_881),
                         ("home_textiles", "median_per_person_fen", 24_576),
                         ("home_textiles", "category_bulk_factor", 5),
                         ("home_textiles", "persons", 5)]  # fmt: skip
    log += got
    d.granted(order(12, person="p-over", price_fen=123_881, quantity=1))  # flagged once
    got = d.ledger.take_pending()
    assert flags(got) == []
    log += got
    check_replay(d, log)


def test_below_min_persons_no_median() -> None:
    d, _ = desk(category_bulk_factor=2, category_bulk_min_persons=3)
    d.granted(order(1, person="p-1"))
    d.granted(order(2, person="p-2", quantity=50))
    assert d.ledger.risk.count == 0


def test_without_thresholds_nothing_is_noted() -> None:
    d = Desk(settings(), start="2025-02-12 10:00")
    d.ledger.take_pending()
    for i in range(5):
        d.granted(_with_device(order(i, person=f"p-{i}"), "dev-A"))
    assert [type(e) for e in d.ledger.take_pending()] == [HoldPlaced] * 5
    assert d.ledger.detectors.campaigns == {}


def test_thresholds_out_of_range_are_listed() -> None:
    try:
        settings(risk={"cluster_persons_max": 0, "velocity_redemptions_max": 3,
                       "refund_rebuy_days": 91, "category_bulk_factor": 1,
                       "category_bulk_min_persons": 0})  # fmt: skip
    except SettingsError as exc:
        got = sorted((p.path, p.message) for p in exc.problems)
    assert got == [
        ("risk.category_bulk_factor", "must be 2..1000"),
        ("risk.category_bulk_min_persons", "must be 1..1000000"),
        ("risk.cluster_persons_max", "must be 1..1000"),
        ("risk.refund_rebuy_days", "must be 1..90"),
        ("risk.velocity_window_min", "is required with the other velocity threshold"),
    ]


def test_a_review_is_an_entry_replayed_and_audited() -> None:
    from lijian.core import risk_review
    from lijian.core.entries import BlockAdded, FlagReviewed
    from lijian.core.errors import Conflict, FlagNotFound, InvalidRequest

    d, log = desk(velocity_redemptions_max=1, velocity_window_min=10)
    for i in range(2):
        d.granted(order(i, person="p-1"))
        d.granted(order(10 + i, person="p-2"))
    log += d.ledger.take_pending()
    assert list(d.ledger.risk.open["chengdu-2025-spring"]) == ["flag-1", "flag-2"]
    rv = risk_review.review(d.ledger, "chengdu-2025-spring", "ops", "family", "flag-1",
                            "dismiss", None, None, d.now_ms)  # fmt: skip
    assert (rv.flag_id, rv.action, rv.block_id) == ("flag-1", "dismiss", None)
    rv = risk_review.review(d.ledger, "chengdu-2025-spring", "ops", "scalper", "flag-2",
                            "block_person", None, None, d.now_ms)  # fmt: skip
    got = d.ledger.take_pending()
    assert [type(e) for e in got] == [FlagReviewed, BlockAdded, FlagReviewed]
    log += got
    assert d.codes(order(20, person="p-2")) == ["person_blocked"]
    for fid, action, exc in (("flag-1", "dismiss", Conflict), ("flag-9", "dismiss", FlagNotFound),
                             ("flag-2", "ban", Conflict)):  # fmt: skip
        try:
            risk_review.review(d.ledger, "chengdu-2025-spring", "ops", "x", fid, action, None,
                               None, d.now_ms)  # fmt: skip
        except (Conflict, FlagNotFound, InvalidRequest) as e:
            assert isinstance(e, exc), (fid, e)
        else:
            raise AssertionError(fid)
    assert d.ledger.risk.open["chengdu-2025-spring"] == {}
    check_replay(d, log)
    led = replay(d.settings, [encode(e) for e in log])
    assert led.risk.reviews == d.ledger.risk.reviews
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, len(log)))
    assert fresh.risk.reviews == led.risk.reviews and fresh.risk.open == led.risk.open


def test_the_address_text_is_keyed_with_blanks_collapsed() -> None:
    from lijian.core.keyed import keyed, keyed_order

    key = bytes(32)
    o = keyed_order(key, order(1, delivery_address=Address("510104", " 红星路  三段1号 ")))
    assert o.delivery_address == Address("510104", keyed(key, "address_text", "红星路 三段1号"))
    assert "红星路" not in msgspec.json.encode(o).decode()
