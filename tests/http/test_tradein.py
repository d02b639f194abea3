"""The shipped Sichuan-2025-style trade-in campaign over HTTP, on every topology (steps
alternate between gateways where there are two): per-unit discounts to the fen, the
price ceiling, one unit per category and person (air conditioners three), serials
required and subsidised once (20 redemptions racing with one serial: exactly one held),
freed by a void and a full refund; bad serials refused with their field; the audit clean
and every answer the same after a restart (replay or snapshot)."""

from __future__ import annotations

import json
import threading
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import Api, Server, order
from tests.support import ROOT, TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("http-tradein")

FILE = ROOT / "campaigns" / "sichuan-2025-tradein.toml"
# The shipped file as it is (qualifications claimed first: [claims]), and the same rules
# without its [claims], where an order needs no voucher: the item rules on their own.
QUAL = "sichuan-2025-tradein"
TI = "sichuan-2025-items"
RACERS = 20
SKUS = {
    "PHONE-1": "phone", "PHONE-2": "phone", "TABLET-1": "tablet", "WATCH-1": "smartwatch",
    "AC-1": "air_conditioner", "FRIDGE-1": "refrigerator", "SOCKS-1": "withdrawn",
}  # fmt: skip


@pytest.fixture(scope="module")
def trade(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    with open(FILE, "rb") as f:
        shipped = tomllib.load(f)
    with open(FILE, "rb") as f:
        doc = tomllib.load(f)
    assert doc.pop("claims")["mode"] == "claim"
    doc["campaign"]["id"] = TI
    s = Server(
        Path(tmp_path_factory.mktemp("http-tradein")),
        campaigns=[doc, shipped],
        catalog=False,
        topology=topology,
    )
    try:
        lines = [json.dumps({"sku": k, "category": v, "platform": "jd"}) for k, v in SKUS.items()]
        for cid in (TI, QUAL):
            r = s.api.put_catalog(("\n".join(lines) + "\n").encode(), cid=cid)
            assert r.status_code == 200, r.text
        yield s
    finally:
        s.close()


def buy(person: str, *items: dict[str, Any]) -> dict[str, Any]:
    body = order(person=person, campaign_id=TI)
    body["items"] = list(items)
    return body


def item(sku: str, price: int, serial: str | None = None, qty: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"sku": sku, "quantity": qty, "unit_price_fen": price}
    if serial is not None:
        out["serial"] = serial
    return out


def sn() -> str:
    return f"SN-{uuid.uuid4().hex[:12].upper()}"


def someone() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def codes(api: Api, body: dict[str, Any]) -> list[str]:
    return api.codes(body)


def refund_in_full(api: Api, rid: str, payable_fen: int) -> None:
    assert api.post(f"/v1/redemptions/{rid}/capture").status_code == 200
    r = api.post(f"/v1/redemptions/{rid}/refunds", {"refund_id": "all", "payable_fen": payable_fen},
                 headers={"Idempotency-Key": f"{rid}-all"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "full"


def test_per_unit_discounts_and_the_price_ceiling_to_the_fen(trade: Server) -> None:
    api = trade.api
    p = someone()
    phone = api.granted(buy(p, item("PHONE-1", 399_900, sn())))  # 15% = 59,985: capped
    assert (phone["status"], phone["payable_fen"], phone["discount_fen"]) == (
        "held",
        399_900,
        50_000,
    )
    q = api.post("/v1/quotes", buy(someone(), item("TABLET-1", 200_001, sn())))
    assert q.status_code == 200, q.text
    assert (q.json()["discount_fen"], q.json()["reasons"]) == (30_000, [])  # 30,000.15
    ac = api.granted(buy(p, item("AC-1", 1_299_900, sn())))  # 20% = 259,980: capped 200,000
    assert ac["discount_fen"] == 200_000
    fridge = api.granted(buy(p, item("FRIDGE-1", 333_333, sn()), item("SOCKS-1", 9_900)))
    assert (fridge["payable_fen"], fridge["discount_fen"]) == (343_233, 66_666)  # socks: 0
    assert codes(api, buy(someone(), item("WATCH-1", 600_001, sn()))) == ["item_price_above_limit"]
    assert api.granted(buy(someone(), item("WATCH-1", 600_000, sn())))["discount_fen"] == 50_000
    big = api.granted(buy(someone(), item("FRIDGE-1", 3_000_000, sn())))  # no ceiling
    assert big["discount_fen"] == 200_000


def test_one_unit_per_category_air_conditioners_three_freed_by_void_and_refund(
    trade: Server,
) -> None:
    api, p = trade.api, someone()
    first = api.granted(buy(p, item("PHONE-1", 300_000, sn())))
    assert codes(api, buy(p, item("PHONE-2", 300_000, sn()))) == ["person_category_limit"]
    api.granted(buy(p, item("TABLET-1", 300_000, sn())))  # another category
    acs = [api.granted(buy(p, item("AC-1", 300_000, sn()))) for _ in range(3)]
    assert codes(api, buy(p, item("AC-1", 300_000, sn()))) == ["person_category_limit"]
    assert api.post(f"/v1/redemptions/{first['id']}/void").status_code == 200
    api.granted(buy(p, item("PHONE-2", 300_000, sn())))  # the void freed the unit
    refund_in_full(api, acs[0]["id"], 300_000)  # so does a full refund
    api.granted(buy(p, item("AC-1", 300_000, sn())))
    assert codes(api, buy(p, item("AC-1", 300_000, sn()))) == ["person_category_limit"]


def test_serials_are_required_and_subsidised_once(trade: Server) -> None:
    api, serial = trade.api, sn()
    assert codes(api, buy(someone(), item("PHONE-1", 300_000))) == ["serial_required"]
    assert codes(api, buy(someone(), item("AC-1", 300_000, qty=2))) == ["serial_required"]
    held = api.granted(buy(someone(), item("PHONE-1", 300_000, serial)))
    assert codes(api, buy(someone(), item("PHONE-1", 300_000, serial))) == [
        "serial_already_subsidised"
    ]
    assert api.post(f"/v1/redemptions/{held['id']}/void").status_code == 200
    again = api.granted(buy(someone(), item("PHONE-1", 300_000, serial)))
    refund_in_full(api, again["id"], 300_000)
    last = api.granted(buy(someone(), item("PHONE-1", 300_000, serial)))
    assert last["status"] == "held"


BAD_SERIALS = [
    ("", "empty"),
    ("S" * 65, "65 characters"),
    ("SN\u0000", "NUL"),
    ("SN\n1", "newline"),
    ("SN\u007f", "DEL"),
    ("序列号", "not ASCII"),
    (12345, "a number"),
]


@pytest.mark.parametrize(("serial", "why"), BAD_SERIALS, ids=[w for _, w in BAD_SERIALS])
def test_a_bad_serial_is_422_with_its_field_and_changes_nothing(
    trade: Server, serial: Any, why: str
) -> None:
    api, p = trade.api, someone()
    body = buy(p, {"sku": "PHONE-1", "quantity": 1, "unit_price_fen": 300_000, "serial": serial})
    for r in (api.redeem(body), api.post("/v1/quotes", body)):
        assert r.status_code == 422, (why, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "invalid_request"
        assert r.json()["errors"][0]["field"] == "items[0].serial", r.json()
    api.granted(buy(p, item("PHONE-1", 300_000, sn())))  # the person's unit is still there


def test_a_serial_on_several_units_or_twice_in_an_order_is_422(trade: Server) -> None:
    api = trade.api
    s = sn()
    for body, why in (
        (buy(someone(), item("AC-1", 300_000, sn(), qty=2)), "quantity must be 1"),
        (buy(someone(), item("PHONE-1", 300_000, s), item("TABLET-1", 300_000, s)),
         "each serial may appear once"),
    ):  # fmt: skip
        for r in (api.redeem(body), api.post("/v1/quotes", body)):
            assert r.status_code == 422 and why in r.text, r.text
            assert r.json()["errors"][0]["field"] == "items", r.text


def test_20_redemptions_racing_with_one_serial_hold_exactly_one(trade: Server) -> None:
    serial = sn()
    barrier = threading.Barrier(RACERS)
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        api = Api(trade.urls[i % len(trade.urls)])  # one connection each; gateways alternate
        try:
            body = buy(someone(), item("PHONE-1", 300_000, serial))
            barrier.wait()
            r = api.redeem(body)
            with lock:
                answers.append((r.status_code, r.json()))
        finally:
            api.close()

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(answers) == RACERS
    held = [a for code, a in answers if code == 201]
    declined = [a for code, a in answers if code == 200]
    assert len(held) == 1 and held[0]["status"] == "held", answers
    assert len(declined) == RACERS - 1
    assert all([x["code"] for x in a["reasons"]] == ["serial_already_subsidised"] for a in declined)


def test_the_audit_is_clean_and_answers_hold_after_a_restart(trade: Server) -> None:
    api, serial, p = trade.api, sn(), someone()
    api.granted(buy(p, item("PHONE-1", 300_000, serial)))
    audit = api.get(f"/v1/campaigns/{TI}/audit", as_="audit")
    assert audit.status_code == 200 and audit.json()["ok"] is True, audit.text
    trade.stop()
    trade.start()
    assert codes(api, buy(someone(), item("PHONE-2", 300_000, serial))) == [
        "serial_already_subsidised"
    ]
    assert codes(api, buy(p, item("PHONE-2", 300_000, sn()))) == ["person_category_limit"]
    audit = api.get(f"/v1/campaigns/{TI}/audit", as_="audit")
    assert audit.status_code == 200 and audit.json()["ok"] is True, audit.text
    # Goods outside the campaign's categories alone get nothing, as before.
    assert codes(api, buy(someone(), item("SOCKS-1", 9_900))) == [
        "not_campaign_goods",
        "discount_zero",
    ]


def test_a_raw_request_with_a_serial_is_answered_the_same_by_each_gateway(trade: Server) -> None:
    serial, p = sn(), someone()
    body = buy(p, item("TABLET-1", 100_000, serial))
    answers = []
    for url in trade.urls:
        api = Api(url)
        try:
            answers.append(api.post("/v1/quotes", body).json())
        finally:
            api.close()
    assert all(a == answers[0] for a in answers)
    assert answers[0]["discount_fen"] == 15_000


def qualify(api: Api, person: str, category: str) -> httpx.Response:
    body = {
        "person": {"id": person, "real_name_verified": True},
        "device_location": {"lng": TIANFU_SQUARE[0], "lat": TIANFU_SQUARE[1], "crs": "gcj02"},
        "category": category,
    }
    return api.post(f"/v1/campaigns/{QUAL}/claims", body,
                    headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip


def test_the_shipped_file_a_qualification_for_one_category_then_a_purchase_with_it(
    trade: Server,
) -> None:
    """The Sichuan shape whole: a qualification claimed for phones (valid today), then a
    4,000.00 CNY phone bought with it: 15% is 600.00, capped at 500.00 a unit; the rest
    of the qualification's 2,000.00 goes back at capture."""
    api = trade.api
    p = someone()
    r = qualify(api, p, "phone")
    assert r.status_code == 201, r.text
    q = r.json()
    assert (q["status"], q["category"], q["value_fen"]) == ("claimed", "phone", 200_000)
    again = qualify(api, p, "phone")  # one qualification a day per category
    assert again.status_code == 200 and [x["code"] for x in again.json()["reasons"]] == [
        "person_category_limit"
    ], again.text
    phone = item("PHONE-1", 400_000, sn())
    no_voucher = order(person=p, campaign_id=QUAL)
    no_voucher["items"] = [phone]
    assert codes(api, no_voucher) == ["voucher_required"]
    fridge = order(person=p, campaign_id=QUAL, voucher_id=q["id"])
    fridge["items"] = [item("FRIDGE-1", 500_000, sn())]
    assert codes(api, fridge) == ["voucher_category_mismatch"]
    body = order(person=p, campaign_id=QUAL, voucher_id=q["id"])
    body["items"] = [phone]
    red = api.granted(body)
    assert (red["status"], red["discount_fen"]) == ("held", 50_000)
    assert api.post(f"/v1/redemptions/{red['id']}/capture").status_code == 200
    v = api.get(f"/v1/vouchers/{q['id']}")
    assert v.status_code == 200 and v.json()["status"] == "used", v.text
    second = order(person=p, campaign_id=QUAL, voucher_id=q["id"])  # a second phone
    second["items"] = [item("PHONE-2", 300_000, sn())]
    # Both hold: one phone per person, and the qualification is used.
    assert codes(api, second) == ["person_category_limit", "voucher_used"]
