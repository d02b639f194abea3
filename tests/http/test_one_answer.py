"""Every topology gives exactly the answers one process gives (docs/API.md, SCALE-OUT.md).

Each scenario writes through one client and reads at once through another: on
``pg-2gw`` the harness ``Api`` alternates between the two gateways, and on ``--workers
2`` separate connections land on separate gateway processes. A write acknowledged by
any gateway is seen by the very next read, wherever it is answered: a catalogue line, a
clock move, a nonce, the last fen of a tranche, an expiry, a refund, an idempotency key.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import Api, Server, campaign_doc, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-one-answer")

DISCOUNT_FEN = 3_720  # 15% of the example order's 24,800 fen payable
EXAMPLE_QUOTE = {
    "eligible": True,
    "discount_fen": DISCOUNT_FEN,
    "payable_fen": 24_800,
    "pay_fen": 24_800 - DISCOUNT_FEN,
    "capped": False,
    "reasons": [],
}
CAP_FEN = 150_000
READERS = 4  # clients with their own connections, so reads come from other processes
THREADS = 16


def ndjson_line(sku: str, category: str = "fresh_food", platform: str = "jd") -> bytes:
    return (json.dumps({"sku": sku, "category": category, "platform": platform}) + "\n").encode()


def codes(r: httpx.Response) -> list[str]:
    return [x["code"] for x in r.json()["reasons"]]


def assert_401(r: httpx.Response, code: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


@pytest.fixture
def clients(server: Server) -> Iterator[list[Api]]:
    """Clients of the shared server, each with its own connections."""
    apis = [Api(*server.urls) for _ in range(READERS)]
    try:
        yield apis
    finally:
        for a in apis:
            a.close()


@pytest.fixture
def start(tmp_path: Path, topology: str) -> Iterator[Callable[..., Server]]:
    """Start servers of this test's own (closed at teardown)."""
    made: list[Server] = []

    def make(**kw: Any) -> Server:
        s = Server(tmp_path / f"server-{len(made)}", topology=topology, **kw)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()


def own_clients(s: Server, n: int = READERS) -> list[Api]:
    return [Api(*s.urls) for _ in range(n)]


# ----------------------------------------------------------------- 1. catalogue


def test_a_new_catalogue_line_is_quoted_at_once_by_any_gateway(clients: list[Api]) -> None:
    tag = uuid.uuid4().hex[:8]
    for i in range(20):
        sku = f"JD-ONE-{tag}-{i}"
        writer, reader, other = (clients[(i + k) % READERS] for k in range(3))
        before = other.post("/v1/quotes", order(sku=sku))
        assert before.status_code == 200, before.text
        assert before.json()["eligible"] is False
        assert codes(before) == ["not_campaign_goods"]
        put = writer.put_catalog(ndjson_line(sku), as_="ops")
        assert put.status_code == 200, put.text
        assert put.json() == {"upserted": 1}
        q = reader.post("/v1/quotes", order(sku=sku))
        assert q.status_code == 200, q.text
        assert q.json() == EXAMPLE_QUOTE, (i, sku)
        # The reader that quoted it out a moment ago now quotes it in as well.
        again = other.post("/v1/quotes", order(sku=sku))
        assert again.json() == EXAMPLE_QUOTE, (i, sku)


def test_a_catalogue_move_out_of_the_categories_is_seen_at_once(clients: list[Api]) -> None:
    tag = uuid.uuid4().hex[:8]
    for i in range(10):
        sku = f"JD-OUT-{tag}-{i}"
        writer, reader = clients[i % READERS], clients[(i + 1) % READERS]
        assert writer.put_catalog(ndjson_line(sku), as_="ops").status_code == 200
        assert reader.post("/v1/quotes", order(sku=sku)).json() == EXAMPLE_QUOTE
        assert writer.put_catalog(ndjson_line(sku, "withdrawn"), as_="ops").status_code == 200
        q = reader.post("/v1/quotes", order(sku=sku))
        assert q.json()["eligible"] is False, (i, sku)
        assert codes(q) == ["not_campaign_goods"]


# --------------------------------------------------------------------- 2. clock


def test_a_clock_move_is_seen_by_the_next_quote(start: Callable[..., Server]) -> None:
    s = start(clock="manual:2025-02-12T09:59:00+08:00")
    apis = own_clients(s)
    try:
        steps = [
            # (clock, eligible, reasons, campaign state)
            (None, False, ["tranche_not_open"], "scheduled"),
            ("2025-02-12T10:00:00+08:00", True, [], "open"),
            ("2025-02-13T09:59:59+08:00", False, ["tranche_not_open"], "closed_for_day"),
            ("2025-02-13T10:00:00+08:00", True, [], "open"),
        ]
        for i, (now, eligible, reasons, state) in enumerate(steps):
            mover, reader, watcher = (apis[(i + k) % READERS] for k in range(3))
            if now is not None:
                r = mover.post("/v1/admin/clock", {"now": now}, as_="ops")
                assert r.status_code == 200, r.text
                assert r.json() == {"now": now}
            q = reader.post("/v1/quotes", order())
            assert q.status_code == 200, q.text
            if eligible:
                assert q.json() == EXAMPLE_QUOTE, (i, now)
            else:
                assert q.json()["eligible"] is False, (i, now)
                assert codes(q) == reasons, (i, now)
            st = watcher.status()
            assert st["state"] == state, (i, now)
            if now is not None:
                assert st["now"] == now
        # A redemption right after the move is granted, and dated by the moved clock.
        apis[0].set_clock("2025-02-13T10:05:00+08:00")
        created = apis[1].granted(order())
        assert created["tranche_date"] == "2025-02-13"
        assert created["expires_at"] == "2025-02-13T10:20:00+08:00"
    finally:
        for a in apis:
            a.close()


def test_a_declined_redemption_before_the_opening_is_granted_right_after(
    start: Callable[..., Server],
) -> None:
    s = start(clock="manual:2025-02-12T09:59:59+08:00")
    apis = own_clients(s)
    try:
        body = order()
        r = apis[0].redeem(body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "declined"
        assert codes(r) == ["tranche_not_open"]
        moved = apis[1].post("/v1/admin/clock", {"advance_s": 1}, as_="ops")
        assert moved.json() == {"now": "2025-02-12T10:00:00+08:00"}
        r = apis[2].redeem(body)
        assert r.status_code == 201, r.text
        assert r.json()["discount_fen"] == DISCOUNT_FEN
        assert r.json()["expires_at"] == "2025-02-12T10:15:00+08:00"
    finally:
        for a in apis:
            a.close()


# --------------------------------------------------------------------- 3. nonces


def test_a_nonce_replayed_to_another_gateway_is_refused(clients: list[Api]) -> None:
    path = f"/v1/campaigns/{CID}/status"
    for i in range(8):
        first, second = clients[i % READERS], clients[(i + 1) % READERS]
        nonce, ts = f"one-answer-{uuid.uuid4().hex}", int(time.time())
        assert first.get(path, nonce=nonce, ts=ts).status_code == 200
        assert_401(second.get(path, nonce=nonce, ts=ts), "nonce_reused")
        assert_401(first.get(path, nonce=nonce, ts=ts), "nonce_reused")


def test_a_replayed_redemption_with_its_nonce_makes_no_second_grant(
    server: Server, clients: list[Api]
) -> None:
    before = clients[0].status()
    body, key = order(), uuid.uuid4().hex
    nonce, ts = f"one-answer-{uuid.uuid4().hex}", int(time.time())
    r = clients[1].redeem(body, key=key, nonce=nonce, ts=ts)
    assert r.status_code == 201, r.text
    for a in (clients[2], clients[3], clients[1]):
        assert_401(a.redeem(body, key=key, nonce=nonce, ts=ts), "nonce_reused")
    after = clients[0].status()
    assert after["held_fen"] == before["held_fen"] + DISCOUNT_FEN
    assert after["today"]["remaining_fen"] == before["today"]["remaining_fen"] - DISCOUNT_FEN


def test_a_clock_advance_replayed_with_its_nonce_moves_the_clock_once(
    start: Callable[..., Server],
) -> None:
    s = start()
    apis = own_clients(s)
    try:
        nonce, ts = f"one-answer-{uuid.uuid4().hex}", int(time.time())
        answers = [
            apis[i % READERS].post(
                "/v1/admin/clock", {"advance_s": 60}, as_="ops", nonce=nonce, ts=ts
            )
            for i in range(5)
        ]
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json() == {"now": "2025-02-12T10:01:00+08:00"}
        for r in answers[1:]:
            assert_401(r, "nonce_reused")
        for a in apis:
            assert a.status()["now"] == "2025-02-12T10:01:00+08:00"
    finally:
        for a in apis:
            a.close()


# ----------------------------------------------------------- 4. the last fen

SMALL = "small"
SMALL_DISCOUNT_FEN = 1_500  # 15% of 10,000 fen payable
SMALL_GRANTS = 3
SMALL_LEFT_FEN = 2_000
SMALL_BUDGET_FEN = SMALL_GRANTS * SMALL_DISCOUNT_FEN + SMALL_LEFT_FEN  # one day, one tranche


def small_campaign() -> dict[str, Any]:
    return campaign_doc(
        campaign={
            "id": SMALL,
            "budget_fen": SMALL_BUDGET_FEN,
            "start_date": "2025-02-12",
            "end_date": "2025-02-12",
        }
    )


def small_order(price_fen: int = 10_000) -> dict[str, Any]:
    return order(campaign_id=SMALL, price_fen=price_fen, quantity=1, platform_discount_fen=0)


def test_the_last_fen_goes_to_the_first_request_in_arrival_order(
    start: Callable[..., Server],
) -> None:
    s = start(campaigns=[small_campaign()])
    apis = own_clients(s)
    try:
        st = apis[0].status(SMALL)
        assert st["today"]["released_fen"] == SMALL_BUDGET_FEN
        assert st["today"]["remaining_fen"] == SMALL_BUDGET_FEN
        for i in range(SMALL_GRANTS - 1):
            g = apis[i % READERS].granted(small_order())
            assert g["discount_fen"] == SMALL_DISCOUNT_FEN
        left = SMALL_BUDGET_FEN - (SMALL_GRANTS - 1) * SMALL_DISCOUNT_FEN
        assert apis[2].status(SMALL)["today"]["remaining_fen"] == left
        # 3,500 fen left: exactly one more 1,500-fen grant fits after this one.
        g = apis[3].granted(small_order())
        assert g["discount_fen"] == SMALL_DISCOUNT_FEN
        st = apis[0].status(SMALL)
        assert st["today"]["remaining_fen"] == SMALL_LEFT_FEN
        assert st["state"] == "open"
        # 2,000 fen left: the first of two requests in arrival order gets 1,500 of it...
        first = apis[1].redeem(small_order())
        assert first.status_code == 201, first.text
        assert first.json()["discount_fen"] == SMALL_DISCOUNT_FEN
        # ...and the second, sent right after to another gateway, is sold out.
        second = apis[2].redeem(small_order())
        assert second.status_code == 200, second.text
        assert second.json()["status"] == "declined"
        assert codes(second) == ["sold_out", "budget_exhausted"]
        st = apis[3].status(SMALL)
        assert st["today"]["remaining_fen"] == SMALL_LEFT_FEN - SMALL_DISCOUNT_FEN == 500
        assert st["held_fen"] == st["today"]["held_fen"] == (SMALL_GRANTS + 1) * SMALL_DISCOUNT_FEN
        assert st["state"] == "sold_out"
        assert st["today"]["sold_out_at"] == "2025-02-12T10:00:00+08:00"
        # 500 fen are still left for an order whose discount fits them (450 fen).
        fits = apis[0].redeem(small_order(price_fen=3_000))
        assert fits.status_code == 201, fits.text
        assert fits.json()["discount_fen"] == 450
        assert apis[1].status(SMALL)["today"]["remaining_fen"] == 50
        quote = apis[2].post("/v1/quotes", small_order())
        assert quote.json()["eligible"] is False
        assert codes(quote) == ["sold_out", "budget_exhausted"]
    finally:
        for a in apis:
            a.close()


def test_of_many_concurrent_requests_for_the_last_fen_exactly_one_wins(
    start: Callable[..., Server],
) -> None:
    s = start(campaigns=[small_campaign()])
    setup = Api(*s.urls)
    try:
        for _ in range(SMALL_GRANTS):
            setup.granted(small_order())
        assert setup.status(SMALL)["today"]["remaining_fen"] == SMALL_LEFT_FEN
    finally:
        setup.close()
    barrier = threading.Barrier(THREADS)

    def rush(i: int) -> tuple[int, dict[str, Any]]:
        api = Api(*s.urls)
        try:
            barrier.wait(30)
            r = api.redeem(small_order())
            return r.status_code, r.json()
        finally:
            api.close()

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(rush, range(THREADS)))
    granted = [b for code, b in answers if code == 201]
    declined = [b for code, b in answers if code == 200]
    assert len(granted) == 1, answers
    assert len(declined) == THREADS - 1, answers
    assert all(
        [x["code"] for x in d["reasons"]] == ["sold_out", "budget_exhausted"] for d in declined
    )
    st = s.api.status(SMALL)
    assert st["today"]["remaining_fen"] == SMALL_LEFT_FEN - SMALL_DISCOUNT_FEN
    assert st["held_fen"] == (SMALL_GRANTS + 1) * SMALL_DISCOUNT_FEN


# ---------------------------------------------------------------- 5. expiry

SHORT_TTL_S = 60


def test_an_expired_hold_is_read_as_expired_everywhere(start: Callable[..., Server]) -> None:
    s = start(campaigns=[campaign_doc(limits={"hold_ttl_s": SHORT_TTL_S})])
    apis = own_clients(s)
    try:
        before = apis[0].status()
        body = order()
        pid = body["person"]["id"]
        created = apis[1].granted(body)
        rid = created["id"]
        assert created["status"] == "held"
        assert created["expires_at"] == "2025-02-12T10:01:00+08:00"
        st = apis[2].status()
        assert st["held_fen"] == before["held_fen"] + DISCOUNT_FEN == DISCOUNT_FEN
        assert apis[3].person(pid)["held_fen"] == DISCOUNT_FEN
        # One second before the expiry the hold still holds.
        apis[0].set_clock("2025-02-12T10:00:59+08:00")
        assert apis[1].get(f"/v1/redemptions/{rid}").json()["status"] == "held"
        r = apis[2].post("/v1/admin/clock", {"advance_s": 2}, as_="ops")
        assert r.json() == {"now": "2025-02-12T10:01:01+08:00"}
        for i in range(READERS):
            read = apis[(3 + i) % READERS].get(f"/v1/redemptions/{rid}")
            assert read.status_code == 200, read.text
            assert read.json()["status"] == "expired", i
            assert read.json()["ended_at"] == "2025-02-12T10:01:00+08:00"
        st = apis[0].status()
        assert st["held_fen"] == 0
        assert st["today"]["held_fen"] == 0
        assert st["today"]["remaining_fen"] == before["today"]["remaining_fen"]
        assert apis[1].person(pid) == {
            "person_id": pid,
            "cap_fen": CAP_FEN,
            "used_fen": 0,
            "held_fen": 0,
            "remaining_fen": CAP_FEN,
            "pending_restores": [],
            "redemptions_count": 0,
        }
        r = apis[2].post(f"/v1/redemptions/{rid}/capture")
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "hold_not_active"
        # The order may be redeemed again once its hold has expired.
        again = apis[3].redeem(body)
        assert again.status_code == 201, again.text
        assert again.json()["id"] != rid
    finally:
        for a in apis:
            a.close()


# --------------------------------------------------------------- 6. refunds


def _refund_view(refund: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in refund.items() if k != "redemption"}


def test_refunds_and_quota_restores_are_read_as_recorded(clients: list[Api]) -> None:
    writer = clients[0]
    pid = f"p-refund-{uuid.uuid4().hex[:12]}"
    before = clients[1].status()

    # A: a single full refund, its quota restored the next day (R17).
    a = writer.granted(order(person=pid))  # payable 24,800, discount 3,720
    assert clients[1].post(f"/v1/redemptions/{a['id']}/capture").status_code == 200
    r = clients[2].post(
        f"/v1/redemptions/{a['id']}/refunds",
        {"refund_id": "full", "payable_fen": 24_800},
        headers={"Idempotency-Key": f"{a['id']}-full"},
    )
    assert r.status_code == 201, r.text
    full = r.json()
    assert full["kind"] == "full"
    assert full["returned_payable_fen"] == 24_800
    assert full["card_refund_fen"] == 24_800 - DISCOUNT_FEN
    assert full["clawback_fen"] == DISCOUNT_FEN
    assert full["quota_restore_fen"] == DISCOUNT_FEN
    assert full["quota_restore_at"] == "2025-02-13T00:00:00+08:00"
    assert full["redemption"]["status"] == "refunded"
    for i in range(READERS):
        read = clients[(3 + i) % READERS].get(f"/v1/redemptions/{a['id']}")
        assert read.status_code == 200, read.text
        assert read.json() == full["redemption"], i
        assert read.json()["refunds"] == [_refund_view(full)]
        assert read.json()["refunded_payable_fen"] == 24_800
        assert read.json()["card_refunded_fen"] == full["card_refund_fen"]
        assert read.json()["clawed_back_fen"] == full["clawback_fen"]

    # B: two partial refunds (R18: no quota comes back after a partial).
    b = writer.granted(order(person=pid, price_fen=10_000, quantity=4, platform_discount_fen=0))
    assert b["discount_fen"] == 6_000  # payable 40,000
    assert clients[1].post(f"/v1/redemptions/{b['id']}/capture").status_code == 200
    r = clients[2].post(
        f"/v1/redemptions/{b['id']}/refunds",
        {"refund_id": "rf-1", "items": [{"sku": "JD-1", "quantity": 1}]},
        headers={"Idempotency-Key": f"{b['id']}-rf-1"},
    )
    assert r.status_code == 201, r.text
    partial = r.json()
    assert partial["kind"] == "partial"
    assert partial["card_refund_fen"] == 8_500
    assert partial["clawback_fen"] == 1_500
    assert partial["quota_restore_fen"] == 0
    assert clients[3].get(f"/v1/redemptions/{b['id']}").json() == partial["redemption"]
    r = clients[0].post(
        f"/v1/redemptions/{b['id']}/refunds",
        {"refund_id": "rf-2", "payable_fen": 30_000},
        headers={"Idempotency-Key": f"{b['id']}-rf-2"},
    )
    assert r.status_code == 201, r.text
    rest = r.json()
    assert partial["card_refund_fen"] + rest["card_refund_fen"] == 34_000
    assert partial["clawback_fen"] + rest["clawback_fen"] == 6_000
    assert rest["quota_restore_fen"] == 0
    assert rest["redemption"]["status"] == "refunded"
    for i in range(READERS):
        read = clients[(1 + i) % READERS].get(f"/v1/redemptions/{b['id']}")
        assert read.json() == rest["redemption"], i
        assert read.json()["refunds"] == [_refund_view(partial), _refund_view(rest)]
        assert read.json()["clawed_back_fen"] == 6_000
        assert read.json()["card_refunded_fen"] == 34_000

    # The person: both discounts used (A's comes back tomorrow), one pending restore.
    for i in range(READERS):
        assert clients[i].person(pid) == {
            "person_id": pid,
            "cap_fen": CAP_FEN,
            "used_fen": DISCOUNT_FEN + 6_000,
            "held_fen": 0,
            "remaining_fen": CAP_FEN - DISCOUNT_FEN - 6_000,
            "pending_restores": [
                {"amount_fen": full["quota_restore_fen"], "at": full["quota_restore_at"]}
            ],
            "redemptions_count": 2,
        }, i
    after = clients[2].status()
    assert after["clawed_back_fen"] == before["clawed_back_fen"] + DISCOUNT_FEN + 6_000
    assert after["granted_fen"] == before["granted_fen"]  # captures net of clawbacks


# -------------------------------------------------- 7. one key, one order id


def _concurrently(
    server: Server, make: Callable[[int], tuple[dict[str, Any], str]]
) -> list[httpx.Response]:
    barrier = threading.Barrier(THREADS)

    def send(i: int) -> httpx.Response:
        body, key = make(i)
        api = Api(*server.urls)
        try:
            barrier.wait(30)
            r = api.redeem(body, key=key)
            return r
        finally:
            api.close()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(send, range(THREADS)))


def test_the_same_key_and_order_sent_concurrently_grant_once(server: Server, api: Api) -> None:
    before = api.status()
    body, key = order(), f"same-{uuid.uuid4().hex}"
    answers = _concurrently(server, lambda i: (body, key))
    assert [r.status_code for r in answers] == [201] * THREADS, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    first = [r for r in answers if "Idempotent-Replayed" not in r.headers]
    assert len(first) == 1, [dict(r.headers) for r in answers]
    replays = [r for r in answers if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replays) == THREADS - 1
    assert all(r.json() == first[0].json() for r in replays)
    after = api.status()
    assert after["held_fen"] == before["held_fen"] + DISCOUNT_FEN
    assert after["today"]["remaining_fen"] == before["today"]["remaining_fen"] - DISCOUNT_FEN
    read = api.get(f"/v1/redemptions/{first[0].json()['id']}")
    assert read.json()["status"] == "held"


def test_the_same_order_id_under_different_keys_is_granted_once(server: Server, api: Api) -> None:
    before = api.status()
    order_id = f"O-same-{uuid.uuid4().hex[:12]}"

    def make(i: int) -> tuple[dict[str, Any], str]:
        body = order(order_id, person=f"p-same-{uuid.uuid4().hex[:8]}-{i}", quantity=1 + i % 3)
        return body, f"{order_id}-{i}"

    answers = _concurrently(server, make)
    granted = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code != 201]
    assert len(granted) == 1, [r.text for r in answers]
    assert [r.status_code for r in refused] == [409] * (THREADS - 1), [r.text for r in refused]
    assert {r.json()["code"] for r in refused} == {"order_already_redeemed"}
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    g = granted[0].json()
    assert g["order_id"] == order_id
    after = api.status()
    assert after["held_fen"] == before["held_fen"] + g["discount_fen"]
    assert after["today"]["remaining_fen"] == before["today"]["remaining_fen"] - g["discount_fen"]
    # The order's one redemption is the one granted; its person holds it, no other does.
    assert api.get(f"/v1/redemptions/{g['id']}").json()["person_id"] == g["person_id"]
    assert api.person(g["person_id"])["held_fen"] == g["discount_fen"]
