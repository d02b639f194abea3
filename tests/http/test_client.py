"""lijian.client against a live server, on every topology: typed answers, the same key
replayed, problems raised as ProblemError naming the field, the async client."""

from __future__ import annotations

import asyncio

import pytest

from lijian.client import (
    AsyncLijianClient,
    Credentials,
    Declined,
    LijianClient,
    ProblemError,
    RedemptionCreated,
)
from lijian.core.order import Item, Location, Order, Person
from tests.http.harness import CLIENTS, Server, order
from tests.support import CID, TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("http-main")


def creds(key_id: str) -> Credentials:
    return Credentials(key_id, CLIENTS[key_id]["secret"])


def test_the_life_of_a_redemption_through_the_typed_client(server: Server) -> None:
    with LijianClient(server.url, creds("unionpay")) as api:
        q = api.quote(order())
        assert (q.eligible, q.discount_fen, q.payable_fen, q.pay_fen) == (
            True,
            3_720,
            24_800,
            21_080,
        )
        body = order()
        held = api.redeem(body, key="client-k1")
        assert isinstance(held, RedemptionCreated)
        assert (held.status, held.discount_fen, held.tranche_date) == ("held", 3_720, "2025-02-12")
        again = api.redeem(body, key="client-k1")  # the same key: the first answer again
        assert again == held
        captured = api.capture(held.id)
        assert (captured.status, captured.captured_at is not None) == ("captured", True)
        refund = api.refund(held.id, {"refund_id": "rf-1", "payable_fen": 24_800})
        assert (refund.kind, refund.returned_payable_fen, refund.clawback_fen) == (
            "full",
            24_800,
            3_720,
        )
        assert api.redemption(held.id).status == "refunded"
        quota = api.person(CID, body["person"]["id"])
        # A full refund gives the quota back the next day (the seed's R17 choice).
        assert (quota.cap_fen, quota.used_fen, quota.redemptions_count) == (150_000, 3_720, 1)
        assert [r.amount_fen for r in quota.pending_restores] == [3_720]


def test_a_domain_struct_is_sent_as_its_json(server: Server) -> None:
    o = Order(
        campaign_id=CID, platform="jd", order_id="O-struct-1", payment_channel="unionpay",
        person=Person("p-struct-1", True), items=[Item("JD-1", 2, 12_900, 1_000)],
        device_location=Location(*TIANFU_SQUARE, "gcj02"),
    )  # fmt: skip
    with LijianClient(server.url, creds("unionpay")) as api:
        answer = api.redeem(o)
    # No delivery address given: the seed campaign requires one in the city.
    assert isinstance(answer, Declined)
    assert [r.code for r in answer.reasons] == ["address_outside_city"]


def test_problems_are_raised_with_their_code_and_field(server: Server) -> None:
    with LijianClient(server.url, creds("unionpay")) as api:
        with pytest.raises(ProblemError) as e:
            api.redeem(order(items=[{"sku": "JD-1", "quantity": 1, "unit_price_fen": 1.5}]))
        assert (e.value.status, e.value.code) == (422, "invalid_request")
        assert [x.field for x in e.value.errors] == ["items[0].unit_price_fen"]
        with pytest.raises(ProblemError) as e:
            api.audit(CID)  # a channel may not read the audit
        assert (e.value.status, e.value.code) == (403, "forbidden")
    with LijianClient(server.url, Credentials("unionpay", "not-the-secret")) as api:
        with pytest.raises(ProblemError) as e:
            api.status(CID)
        assert (e.value.status, e.value.code) == (401, "bad_signature")


def test_the_async_client_gives_the_same_answers(server: Server) -> None:
    async def run() -> tuple[int, str, int]:
        async with AsyncLijianClient(server.url, creds("unionpay")) as api:
            held = await api.redeem(order())
            assert isinstance(held, RedemptionCreated)
            voided = await api.void(held.id)
            ops = api.with_credentials(creds("audit"))
            audit = await ops.audit(CID)
            return held.discount_fen, voided.status, len(audit.checks)

    discount, status, checks = asyncio.run(run())
    assert (discount, status) == (3_720, "voided")
    assert checks > 0
