"""Trade-in item rules in the core: per-unit rates, caps and price ceilings to the fen,
subsidised units per category and person (with overrides, across orders, per linked
group), released on void, expiry and full refund, and serials subsidised once; all of it
replayed, in the snapshot and checked by the audit."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from lijian.catalog import Catalog
from lijian.core.entries import ItemsSubsidised, decode, encode
from lijian.core.errors import InvalidRequest
from lijian.core.invariants import check_invariants
from lijian.core.items import line_discount_fen
from lijian.core.ledger import Ledger
from lijian.core.order import Item, Order, Person, RefundItem
from lijian.core.replay import replay
from lijian.core.settings import SettingsError
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from tests.support import Desk, order, settings

CATS = ["phone", "tablet", "smartwatch", "air_conditioner", "refrigerator"]
TI = "tradein-test"

# Phones 15% up to 500.00 CNY a unit, price ceiling 6,000.00; appliances 20% up to
# 2,000.00; one unit per category and person, air conditioners three.
RULES: dict[str, Any] = {
    "discount": {
        "rate_bp": 1500,
        "category_rate_bp": {"air_conditioner": 2000, "refrigerator": 2000},
        "category_max_discount_fen_per_item": {
            "phone": 50_000,
            "tablet": 50_000,
            "smartwatch": 50_000,
            "air_conditioner": 200_000,
            "refrigerator": 200_000,
        },
        "category_max_unit_price_fen": {"phone": 600_000, "tablet": 600_000, "smartwatch": 600_000},
    },
    "limits": {
        "person_savings_cap_fen": 100_000_000,
        "person_items_per_category": 1,
        "person_items_per_category_overrides": {"air_conditioner": 3},
    },
}


def tradein(**more: dict[str, Any]) -> Any:
    sections: dict[str, dict[str, Any]] = {
        "campaign": {"id": TI},
        "eligibility": {"categories": CATS, "whole_order_campaign_goods": False},
        "discount": dict(RULES["discount"]),
        "limits": dict(RULES["limits"]),
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return settings(**sections)


def desk(**more: dict[str, Any]) -> Desk:
    d = Desk(tradein(**more))
    c = Catalog()
    c.upsert([("jd", f"{cat.upper()}-{i}", cat) for cat in CATS for i in range(3)])
    c.upsert([("jd", "SOCKS-1", "apparel")])  # not a campaign category
    d.catalog = c
    d.move("2025-02-12 10:00")
    return d


def buy(n: Any, *items: Item, person: str = "p-1", **ids: str) -> Order:
    return msgspec.structs.replace(
        order(n, campaign_id=TI), items=list(items), person=Person(person, True, **ids)
    )


def item(sku: str, price: int, qty: int = 1, pd: int = 0, serial: str | None = None) -> Item:
    return Item(sku, qty, price, pd, serial)


def check_replay(d: Desk) -> None:
    """Replay from zero equals the live ledger; a snapshot equals both; the audit is clean."""
    entries = [encode(e) for e in d.ledger.take_pending()]
    led = replay(d.settings, entries)
    assert check_invariants(d.ledger) == [] and check_invariants(led) == []
    assert encode_snapshot(led, 1) == encode_snapshot(d.ledger, 1)
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, 1))
    assert encode_snapshot(fresh, 1) == encode_snapshot(led, 1)
    assert fresh.items.serials == led.items.serials and fresh.items.units == led.items.units
    assert check_invariants(fresh) == []


# ------------------------------------------------------------------ discounts per unit
def test_a_phone_gets_15_percent_capped_at_500_cny_per_unit() -> None:
    d = desk()
    assert d.evaluate(buy(1, item("PHONE-0", 399_900))).discount_fen == 50_000  # 59,985 capped
    assert d.evaluate(buy(2, item("PHONE-0", 200_000, pd=1))).discount_fen == 29_999  # 29,999.85
    assert d.evaluate(buy(3, item("PHONE-0", 333_333))).discount_fen == 49_999  # 49,999.95


def test_units_of_a_line_are_each_floored_and_capped() -> None:
    d = desk()
    # 3 × 3,333.33 CNY − 0.01: units pay 333,333 + 333,333 + 333,332 fen, each 20% floored
    # (66,666 each): 199,998, where 20% of the order would give 199,999.
    ev = d.evaluate(buy(1, item("AIR_CONDITIONER-0", 333_333, qty=3, pd=1)))
    assert (ev.payable_fen, ev.discount_fen) == (999_998, 199_998)
    # 2 × 12,000 CNY at 20% = 2,400 CNY a unit, capped at 2,000: 400,000 fen
    assert d.evaluate(buy(2, item("REFRIGERATOR-0", 1_200_000, qty=2))).discount_fen == 400_000
    assert line_discount_fen(7, 3, 5000, 0) == 1 + 1 + 1  # 3 + 2 + 2 fen: each floored
    assert line_discount_fen(10, 4, 10_000, 2) == 2 + 2 + 2 + 2  # 3,3,2,2 fen capped at 2


def test_a_mixed_order_subsidises_only_campaign_items_and_keeps_the_order_maximum() -> None:
    d = desk()
    o = buy(1, item("PHONE-0", 100_000), item("SOCKS-1", 10_000))
    ev = d.evaluate(o)
    assert (ev.payable_fen, ev.discount_fen, ev.units) == (110_000, 15_000, [("phone", 1)])
    capped = desk(discount={"max_discount_fen_per_order": 60_000})
    two = buy(2, item("PHONE-0", 500_000), item("REFRIGERATOR-0", 500_000))
    assert d.evaluate(two).discount_fen == 50_000 + 100_000
    assert capped.evaluate(two).discount_fen == 60_000


def test_the_price_ceiling_is_per_category_and_inclusive() -> None:
    d = desk()
    assert d.codes(buy(1, item("PHONE-0", 600_001))) == ["item_price_above_limit"]
    assert d.evaluate(buy(2, item("PHONE-0", 600_000))).discount_fen == 50_000
    # No ceiling for appliances in this campaign: 30,000 CNY, 2,000 CNY off.
    assert d.evaluate(buy(3, item("REFRIGERATOR-0", 3_000_000))).discount_fen == 200_000
    # The contract's single keys: one ceiling and one per-unit cap for every category.
    flat = desk(discount={"category_max_unit_price_fen": {}, "max_unit_price_fen": 100_000,
                          "category_max_discount_fen_per_item": {},
                          "max_discount_fen_per_item": 5_000})  # fmt: skip
    assert flat.codes(buy(4, item("REFRIGERATOR-0", 100_001))) == ["item_price_above_limit"]
    assert flat.evaluate(buy(5, item("REFRIGERATOR-0", 100_000))).discount_fen == 5_000


def test_without_item_rules_the_discount_is_the_order_level_one() -> None:
    d = Desk(settings())
    ev = d.evaluate(order(1))
    assert (ev.payable_fen, ev.discount_fen, ev.units, ev.serials) == (24_800, 3_720, [], [])
    assert d.ledger.book(order(1).campaign_id).settings.items.per_item is False


# ------------------------------------------------------------- per-category counts
def test_one_unit_per_category_and_three_air_conditioners_across_orders() -> None:
    d = desk()
    d.granted(buy(1, item("PHONE-0", 300_000)))
    assert d.codes(buy(2, item("PHONE-1", 100_000))) == ["person_category_limit"]
    d.granted(buy(3, item("TABLET-0", 300_000)))  # another category
    d.granted(buy(4, item("AIR_CONDITIONER-0", 300_000)))
    d.granted(buy(5, item("AIR_CONDITIONER-1", 300_000, qty=2)))
    assert d.codes(buy(6, item("AIR_CONDITIONER-2", 300_000))) == ["person_category_limit"]
    d.granted(buy(7, item("PHONE-0", 300_000), person="p-2"))  # another person
    assert desk().codes(buy(8, item("AIR_CONDITIONER-0", 300_000, qty=4))) == [
        "person_category_limit"
    ]
    assert d.ledger.items.units[(TI, "p-1")] == {"air_conditioner": 3, "phone": 1, "tablet": 1}
    check_replay(d)


def test_units_are_released_on_void_expiry_and_full_refund_not_partial() -> None:
    d = desk(limits={"hold_ttl_s": 60})
    rid = d.granted(buy(1, item("PHONE-0", 300_000)))
    d.void(rid)
    rid = d.granted(buy(2, item("PHONE-0", 300_000)))  # the void gave the unit back
    d.move(seconds=61)  # expired
    rid = d.granted(buy(3, item("PHONE-0", 300_000)))
    d.capture(rid)
    d.refund(rid, "rf-1", payable_fen=300_000)  # in full
    rid = d.granted(buy(4, item("PHONE-0", 300_000), item("TABLET-0", 100_000)))
    d.capture(rid)
    d.refund(rid, "rf-2", items=[RefundItem("TABLET-0", 1)])  # partial
    assert d.codes(buy(5, item("PHONE-1", 100_000))) == ["person_category_limit"]
    assert d.codes(buy(6, item("TABLET-1", 100_000))) == ["person_category_limit"]
    d.refund(rid, "rf-3", items=[RefundItem("PHONE-0", 1)])  # now refunded in full
    d.granted(buy(7, item("PHONE-1", 100_000)))
    d.granted(buy(8, item("TABLET-1", 100_000)))
    check_replay(d)


def test_a_linked_group_counts_its_members_units_together() -> None:
    d = desk(identity={"link_by": ["device_id"]})
    d.granted(buy(1, item("PHONE-0", 300_000), person="a", device_id="dev-1"))
    assert d.codes(buy(2, item("PHONE-1", 300_000), person="b", device_id="dev-1")) == [
        "person_category_limit"
    ]
    d.granted(buy(3, item("PHONE-1", 300_000), person="c", device_id="dev-2"))
    check_replay(d)


# ----------------------------------------------------------------------- serials
def test_serials_are_required_and_subsidised_once_until_void_or_full_refund() -> None:
    d = desk(limits={"require_serial": True, "person_items_per_category": 0,
                     "person_items_per_category_overrides": {}})  # fmt: skip
    assert d.codes(buy(1, item("PHONE-0", 300_000))) == ["serial_required"]
    two = buy(2, item("AIR_CONDITIONER-0", 300_000, qty=2))  # one serial can't name two
    assert d.codes(two) == ["serial_required"]
    assert (
        d.evaluate(buy(3, item("SOCKS-1", 1_000), item("PHONE-0", 1_000, serial="S"))).reasons == []
    )
    rid = d.granted(buy(4, item("PHONE-0", 300_000, serial="IMEI-1"), person="p-1"))
    assert d.codes(buy(5, item("PHONE-1", 300_000, serial="IMEI-1"), person="p-2")) == [
        "serial_already_subsidised"
    ]
    d.void(rid)
    rid = d.granted(buy(6, item("PHONE-1", 300_000, serial="IMEI-1"), person="p-2"))
    d.capture(rid)
    d.refund(rid, "rf-1", payable_fen=1)  # partial: the device stays subsidised
    assert d.codes(buy(7, item("PHONE-0", 300_000, serial="IMEI-1"), person="p-3")) == [
        "serial_already_subsidised"
    ]
    d.refund(rid, "rf-2", payable_fen=300_000 - 1)  # the rest: refunded in full
    d.granted(buy(8, item("PHONE-0", 300_000, serial="IMEI-1"), person="p-3"))
    held = [e for e in d.ledger._pending if isinstance(e, ItemsSubsidised)]
    assert [(e.person_id, e.serials, e.units) for e in held] == [
        ("p-1", ["IMEI-1"], []), ("p-2", ["IMEI-1"], []), ("p-3", ["IMEI-1"], []),
    ]  # fmt: skip
    assert d.ledger.items.serials == {(TI, "IMEI-1"): d.ledger.items.serials[(TI, "IMEI-1")]}
    check_replay(d)


def test_a_serial_twice_in_one_order_is_a_bad_request() -> None:
    d = desk()
    o = buy(1, item("PHONE-0", 100_000, serial="X1"), item("TABLET-0", 100_000, serial="X1"))
    with pytest.raises(InvalidRequest, match="each serial may appear once per order"):
        d.evaluate(o)


@pytest.mark.parametrize(
    ("serial", "why"),
    [
        ("", "length >= 1"),
        ("S" * 65, "length <= 64"),
        ("SN\x00", "matching regex"),
        ("SN\n1", "matching regex"),
        ("SN\x7f", "matching regex"),
        ("序列号", "matching regex"),
        ("SN\t", "matching regex"),
        (123, "Expected `str | null`"),
    ],
)
def test_a_bad_serial_is_refused_at_decode(serial: Any, why: str) -> None:
    body = msgspec.json.encode(
        {"sku": "PHONE-0", "quantity": 1, "unit_price_fen": 100, "serial": serial}
    )
    with pytest.raises(msgspec.ValidationError, match=why):
        msgspec.json.decode(body, type=Item)


def test_a_good_serial_decodes_and_a_serial_names_one_unit() -> None:
    for ok in ("S" * 64, "a", "SN 12-AB/9:x~", " "):
        body = {"sku": "PHONE-0", "quantity": 1, "unit_price_fen": 100, "serial": ok}
        assert msgspec.json.decode(msgspec.json.encode(body), type=Item).serial == ok
    with pytest.raises(InvalidRequest, match="quantity must be 1"):
        desk().evaluate(buy(1, item("SOCKS-1", 100, qty=2, serial="S1")))  # any item


def test_replay_refuses_a_serial_subsidised_twice() -> None:
    d = desk()
    d.granted(buy(1, item("PHONE-0", 100_000, serial="DUP")))
    d.granted(buy(2, item("TABLET-0", 100_000, serial="OTHER"), person="p-2"))
    entries = d.ledger.take_pending()
    forged = [msgspec.structs.replace(e, serials=["DUP"])
              if isinstance(e, ItemsSubsidised) and e.serials == ["OTHER"] else e
              for e in entries]  # fmt: skip
    assert forged != entries
    with pytest.raises(AssertionError, match="a serial is subsidised at most once"):
        replay(d.settings, [encode(e) for e in forged])


def test_the_audit_finds_a_serial_counted_twice() -> None:
    d = desk()
    d.granted(buy(1, item("PHONE-0", 100_000, serial="DUP")))
    rid2 = d.granted(buy(2, item("TABLET-0", 100_000), person="p-2"))
    first = next(e for e in d.ledger._pending if isinstance(e, ItemsSubsidised))
    # A forged record (as a corrupted snapshot would bring): the audit recounts it.
    d.ledger.items.records[rid2] = msgspec.structs.replace(
        first, redemption_id=rid2, person_id="p-2"
    )
    d.ledger.items.live.add(rid2)
    problems = check_invariants(d.ledger)
    assert any("subsidised twice" in p for p in problems), problems


# ---------------------------------------------------------------------- settings
def test_every_problem_of_the_item_keys_is_listed_with_its_field() -> None:
    with pytest.raises(SettingsError) as exc:
        tradein(
            discount={"category_rate_bp": {"phone": 0, "toaster": 100, "tablet": True},
                      "max_discount_fen_per_item": -1, "max_unit_price_fen": "6000",
                      "category_max_unit_price_fen": [1]},
            limits={"person_items_per_category": 1.5, "require_serial": "yes",
                    "person_items_per_category_overrides": {"air_conditioner": -3}},
        )  # fmt: skip
    assert [str(p) for p in exc.value.problems] == [
        "discount.category_rate_bp.phone: must be 1..10000",
        "discount.category_rate_bp.toaster: is not one of eligibility.categories",
        "discount.category_rate_bp.tablet: must be an integer, got bool",
        "discount.max_discount_fen_per_item: must be 0..100000000000",
        "discount.max_unit_price_fen: must be an integer, got str",
        "discount.category_max_unit_price_fen: must be a table of category = integer, got list",
        "limits.person_items_per_category: must be an integer, got float",
        "limits.person_items_per_category_overrides.air_conditioner: must be 0..10000",
        "limits.require_serial: must be a bool, got str",
    ]
    with pytest.raises(SettingsError, match=r"discount\.kind: per-item rules"):
        tradein(discount={"kind": "threshold", "tiers": [{"min_payable_fen": 1, "off_fen": 1}]})


def test_the_items_entry_encodes_as_a_plain_tagged_array() -> None:
    e = ItemsSubsidised(5, TI, "rd_1", "p-1", [("phone", 1)], ["IMEI-1"])
    plain = msgspec.msgpack.encode(["items", 5, TI, "rd_1", "p-1", [["phone", 1]], ["IMEI-1"]])
    assert encode(e) == plain
    assert decode(plain) == e
