"""Quotes and the redemption life cycle over real HTTP (docs/API.md, "Endpoints")."""

from __future__ import annotations

import pytest

from tests.http.harness import Api, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")

DISCOUNT_FEN = 3_720  # 15% of the example order's 24,800 fen payable


def test_a_quote_evaluates_without_reserving(api: Api) -> None:
    before = api.status()
    r = api.post("/v1/quotes", order())
    assert r.status_code == 200
    assert r.json() == {
        "eligible": True,
        "discount_fen": DISCOUNT_FEN,
        "payable_fen": 24_800,
        "pay_fen": 21_080,
        "capped": False,
        "reasons": [],
    }
    assert api.status()["today"] == before["today"]


def test_a_quote_lists_every_reason_of_an_ineligible_order(api: Api) -> None:
    body = order(payment_channel="alipay", person={"id": "p-q", "real_name_verified": False})
    r = api.post("/v1/quotes", body)
    assert r.status_code == 200
    assert r.json()["eligible"] is False
    codes = {x["code"] for x in r.json()["reasons"]}
    assert codes == {"payment_channel_not_supported", "not_real_name_verified"}


def test_a_platform_may_quote_its_own_orders_only(api: Api) -> None:
    assert api.post("/v1/quotes", order(), as_="jd").status_code == 200
    r = api.post("/v1/quotes", order(platform="vip", sku="VIP-1"), as_="jd")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_a_redemption_is_held_then_captured_idempotently(api: Api) -> None:
    body = order()
    r = api.redeem(body)
    assert r.status_code == 201
    created = r.json()
    assert created["status"] == "held"
    assert created["discount_fen"] == DISCOUNT_FEN
    assert created["pay_fen"] == 24_800 - DISCOUNT_FEN
    assert created["tranche_date"] == "2025-02-12"
    assert created["expires_at"] == "2025-02-12T10:15:00+08:00"
    assert "Idempotent-Replayed" not in r.headers
    rid = created["id"]
    first = api.post(f"/v1/redemptions/{rid}/capture")
    assert first.status_code == 200
    assert first.json()["status"] == "captured"
    again = api.post(f"/v1/redemptions/{rid}/capture")
    assert again.status_code == 200
    assert again.json() == first.json()
    read = api.get(f"/v1/redemptions/{rid}")
    assert read.status_code == 200
    assert read.json() == first.json()
    assert api.get(f"/v1/redemptions/{rid}", as_="audit").status_code == 200


def test_a_void_returns_the_money_at_once_and_is_idempotent(api: Api) -> None:
    body = order()
    pid = body["person"]["id"]
    before = api.status()["today"]["remaining_fen"]
    rid = api.granted(body)["id"]
    assert api.person(pid)["held_fen"] == DISCOUNT_FEN
    assert api.status()["today"]["remaining_fen"] == before - DISCOUNT_FEN
    r = api.post(f"/v1/redemptions/{rid}/void")
    assert r.status_code == 200
    assert r.json()["status"] == "voided"
    assert api.post(f"/v1/redemptions/{rid}/void").status_code == 200
    assert api.status()["today"]["remaining_fen"] == before
    assert api.person(pid)["remaining_fen"] == 150_000
    r = api.post(f"/v1/redemptions/{rid}/capture")
    assert r.status_code == 409
    assert r.json()["code"] == "hold_not_active"


def test_a_captured_redemption_cannot_be_voided(api: Api) -> None:
    rid = api.granted(order())["id"]
    api.post(f"/v1/redemptions/{rid}/capture")
    r = api.post(f"/v1/redemptions/{rid}/void")
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "already_captured"


def test_capture_and_void_accept_an_empty_object_but_no_fields(api: Api) -> None:
    rid = api.granted(order())["id"]
    bad = api.post(f"/v1/redemptions/{rid}/capture", {"force": True})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "force"
    assert api.get(f"/v1/redemptions/{rid}").json()["status"] == "held"
    assert api.post(f"/v1/redemptions/{rid}/capture", {}).status_code == 200


def test_refunds_follow_r17_and_r18(api: Api) -> None:
    body = order(price_fen=10_000, quantity=4, platform_discount_fen=0)  # payable 40,000
    pid = body["person"]["id"]
    rid = api.granted(body)["id"]  # discount 6,000
    api.post(f"/v1/redemptions/{rid}/capture")
    r = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "rf-1", "items": [{"sku": "JD-1", "quantity": 1}]},
        headers={"Idempotency-Key": f"{rid}-rf-1"},
    )
    assert r.status_code == 201, r.text
    partial = r.json()
    assert partial["kind"] == "partial"
    assert partial["card_refund_fen"] == 8_500  # floor(10,000 × 34,000 / 40,000)
    assert partial["clawback_fen"] == 1_500
    assert partial["quota_restore_fen"] == 0
    assert partial["redemption"]["status"] == "partially_refunded"
    r = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "rf-2", "payable_fen": 30_000},
        headers={"Idempotency-Key": f"{rid}-rf-2"},
    )
    assert r.status_code == 201
    rest = r.json()
    assert partial["card_refund_fen"] + rest["card_refund_fen"] == 34_000  # exactly C
    assert partial["clawback_fen"] + rest["clawback_fen"] == 6_000  # exactly D
    assert rest["redemption"]["status"] == "refunded"
    assert api.person(pid)["pending_restores"] == []  # R18: no quota after a partial


def test_a_single_full_refund_restores_the_quota_next_day(api: Api) -> None:
    body = order()
    pid = body["person"]["id"]
    rid = api.granted(body)["id"]
    api.post(f"/v1/redemptions/{rid}/capture")
    r = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "full", "payable_fen": 24_800},
        headers={"Idempotency-Key": f"{rid}-full"},
    )
    assert r.status_code == 201
    assert r.json()["kind"] == "full"
    assert r.json()["card_refund_fen"] == 24_800 - DISCOUNT_FEN
    assert r.json()["quota_restore_at"] == "2025-02-13T00:00:00+08:00"
    assert api.person(pid)["pending_restores"] == [
        {"amount_fen": DISCOUNT_FEN, "at": "2025-02-13T00:00:00+08:00"}
    ]


def test_refund_conflicts_and_limits(api: Api) -> None:
    rid = api.granted(order())["id"]
    r = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "x", "payable_fen": 100},
        headers={"Idempotency-Key": f"{rid}-held"},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "not_captured"
    api.post(f"/v1/redemptions/{rid}/capture")
    r = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "x", "payable_fen": 24_801},
        headers={"Idempotency-Key": f"{rid}-over"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "refund_exceeds_order"
    assert api.get(f"/v1/redemptions/{rid}").json()["refunds"] == []


def test_a_replayed_redemption_returns_the_first_answer(api: Api) -> None:
    body = order()
    first = api.redeem(body, key="replay-1-" + body["order_id"])
    again = api.redeem(body, key="replay-1-" + body["order_id"])
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_reused_key_with_another_body_is_refused(api: Api) -> None:
    key = "reused-" + order()["order_id"]
    assert api.redeem(order(), key=key).status_code == 201
    before = api.status()
    r = api.redeem(order(), key=key)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    assert api.status() == before


def test_keys_belong_to_one_client(api: Api) -> None:
    key = "shared-" + order()["order_id"]
    assert api.redeem(order(), key=key).status_code == 201
    # The operator's key space is its own: the same key is a new request there.
    assert api.redeem(order(), key=key, as_="ops").status_code == 201


def test_a_replayed_refund_returns_the_first_answer(api: Api) -> None:
    rid = api.granted(order())["id"]
    api.post(f"/v1/redemptions/{rid}/capture")
    body = {"refund_id": "r", "payable_fen": 1_000}
    first = api.post(f"/v1/redemptions/{rid}/refunds", body, headers={"Idempotency-Key": rid})
    again = api.post(f"/v1/redemptions/{rid}/refunds", body, headers={"Idempotency-Key": rid})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "r2", "payable_fen": 1_000},
        headers={"Idempotency-Key": rid},
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


def test_one_held_or_captured_redemption_per_order(api: Api) -> None:
    body = order()
    rid = api.granted(body)["id"]
    second = dict(body, person={"id": "p-other", "real_name_verified": True})
    r = api.redeem(second)
    assert r.status_code == 409
    assert r.json()["code"] == "order_already_redeemed"
    api.post(f"/v1/redemptions/{rid}/capture")
    assert api.redeem(second).status_code == 409
    # After a void the order may be redeemed again.
    again = order()
    rid2 = api.granted(again)["id"]
    api.post(f"/v1/redemptions/{rid2}/void")
    assert api.redeem(again).status_code == 201


def test_declines_are_not_stored_under_the_key(api: Api) -> None:
    body = order(person={"id": "p-unverified", "real_name_verified": False})
    key = "decline-" + body["order_id"]
    r = api.redeem(body, key=key)
    assert r.status_code == 200
    assert r.json() == {
        "status": "declined",
        "reasons": [
            {"code": "not_real_name_verified", "message": r.json()["reasons"][0]["message"]}
        ],
        "discount_fen": 0,
    }
    fixed = dict(body, person={"id": "p-verified-" + key, "real_name_verified": True})
    assert api.redeem(fixed, key=key).status_code == 201


def test_unknown_redemptions_and_campaigns_are_404(api: Api) -> None:
    for r in (
        api.get("/v1/redemptions/rd_nope"),
        api.post("/v1/redemptions/rd_nope/capture"),
        api.post("/v1/redemptions/rd_nope/void"),
        api.get("/v1/campaigns/nope/status"),
        api.get("/v1/campaigns/nope/persons/p-1"),
    ):
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
    r = api.post(
        "/v1/redemptions/rd_nope/refunds",
        {"refund_id": "x", "payable_fen": 1},
        headers={"Idempotency-Key": "k-404"},
    )
    assert r.status_code == 404
    assert r.json()["code"] == "redemption_not_found"


def test_person_quota_counts_held_and_captured(api: Api) -> None:
    pid = "p-quota-" + order()["order_id"]
    a = api.granted(order(person=pid))
    api.granted(order(person=pid))
    api.post(f"/v1/redemptions/{a['id']}/capture")
    assert api.person(pid) == {
        "person_id": pid,
        "cap_fen": 150_000,
        "used_fen": DISCOUNT_FEN,
        "held_fen": DISCOUNT_FEN,
        "remaining_fen": 150_000 - 2 * DISCOUNT_FEN,
        "pending_restores": [],
        "redemptions_count": 2,
    }


def test_status_figures_follow_grants_and_captures(api: Api) -> None:
    before = api.status()
    rid = api.granted(order())["id"]
    mid = api.status()
    assert mid["held_fen"] == before["held_fen"] + DISCOUNT_FEN
    assert mid["today"]["remaining_fen"] == before["today"]["remaining_fen"] - DISCOUNT_FEN
    api.post(f"/v1/redemptions/{rid}/capture")
    after = api.status()
    assert after["granted_fen"] == before["granted_fen"] + DISCOUNT_FEN
    assert after["held_fen"] == before["held_fen"]
    assert after["campaign_id"] == CID
    assert after["state"] == "open"
    assert after["budget_fen"] == 3_000_000_000
    assert after["next_release_at"] == "2025-02-13T10:00:00+08:00"
    assert api.get(f"/v1/campaigns/{CID}/status", as_="jd").status_code == 200
    assert api.get(f"/v1/campaigns/{CID}/status", as_="audit").status_code == 200
