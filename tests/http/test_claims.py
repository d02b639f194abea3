"""Claimed vouchers over HTTP on every topology: claim, pay with the voucher, capture,
bad vouchers, limits and hours, today's vouchers in the status, expiry, and 64 threads
claiming the last vouchers of a day. Each step goes to the next process in turn (two
gateways on ``pg-2gw``). One server per topology for this module."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import Api, Server, campaign_doc, order
from tests.support import TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("http-claims")

HZ = "hangzhou-style-claims"
RACE = "claims-race"
LOTTO = "claims-lottery"
V = 3_000
PER_DAY = 10  # the race campaign's vouchers a day
THREADS = 64
CLAIM_KEYS = ["id", "status", "campaign_id", "person_id", "value_fen", "category",
              "claimed_at", "valid_until", "tranche_date"]  # fmt: skip


def claim_campaign(cid: str, budget_fen: int) -> dict[str, Any]:
    return campaign_doc(
        campaign={"id": cid, "name": cid, "budget_fen": budget_fen},
        refunds={"full_refund_restores_quota": "immediately",
                 "clawback_returns_to": "same_tranche"},
        claims={"mode": "claim", "voucher_value_fen": V, "valid_for": "day",
                "claim_open": "10:00", "claim_close": "22:00", "person_claims_per_day": 1},
    )  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    lotto = claim_campaign(LOTTO, 17 * 2 * V)
    lotto["campaign"]["leftover"] = "expire"  # two vouchers a day, exactly
    lotto["claims"].update(allocation="lottery", lottery_register_s=60)
    docs = [claim_campaign(HZ, 17 * 1_000 * V), claim_campaign(RACE, 17 * PER_DAY * V), lotto]
    s = Server(Path(tmp_path_factory.mktemp(f"claims-{topology}")), campaigns=docs,
               topology=topology)  # fmt: skip
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def api(served: Server) -> Iterator[Api]:
    a = Api(*served.urls)
    try:
        yield a
    finally:
        a.close()


def claim_body(person: str) -> dict[str, Any]:
    return {
        "person": {"id": person, "real_name_verified": True},
        "device_location": {"lng": TIANFU_SQUARE[0], "lat": TIANFU_SQUARE[1], "crs": "gcj02"},
    }


def claim(api: Api, person: str, cid: str = HZ, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return api.post(f"/v1/campaigns/{cid}/claims", claim_body(person), headers=headers)


def claimed(api: Api, person: str, cid: str = HZ) -> dict[str, Any]:
    r = claim(api, person, cid)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def declined(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "declined"
    return [x["code"] for x in r.json()["reasons"]]


def voucher(api: Api, vid: str) -> dict[str, Any]:
    r = api.get(f"/v1/vouchers/{vid}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def person() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def test_claim_pay_capture_and_read(api: Api) -> None:
    p = person()
    key = uuid.uuid4().hex
    r = claim(api, p, key=key)
    assert r.status_code == 201, r.text
    v = r.json()
    assert list(v) == CLAIM_KEYS
    assert (v["status"], v["campaign_id"], v["person_id"], v["value_fen"]) == (
        "claimed", HZ, p, V)  # fmt: skip
    today = api.status(HZ)["today"]  # (the clock is where the module's tests left it)
    assert (v["category"], v["tranche_date"]) == (None, today["date"])
    assert v["valid_until"] == today["closes_at"]  # valid for the day: until its close
    again = claim(api, p, key=key)  # the same request again: the same voucher
    assert again.status_code == 201 and again.json() == v
    assert declined(claim(api, p)) == ["person_claim_limit"]
    st = api.status(HZ)["today"]
    assert st["vouchers_claimed"] >= 1 and st["vouchers_left"] == st["remaining_fen"] // V
    # 24,800 payable, 15% = 3,720: capped at the voucher's 3,000
    red = api.granted(order(person=p, campaign_id=HZ, voucher_id=v["id"]))
    assert red["discount_fen"] == V
    assert voucher(api, v["id"])["status"] == "held"
    r = api.post(f"/v1/redemptions/{red['id']}/capture", {})
    assert r.status_code == 200, r.text
    used = voucher(api, v["id"])
    assert (used["status"], used["redemption_id"], used["discount_fen"]) == (
        "used", red["id"], V)  # fmt: skip
    page = api.get(f"/v1/campaigns/{HZ}/persons/{p}/vouchers", as_="audit")
    assert page.status_code == 200, page.text
    assert [x["id"] for x in page.json()["vouchers"]] == [v["id"]]
    assert page.json()["next_after"] is None


def test_bad_vouchers_and_requests(api: Api) -> None:
    a, b = person(), person()
    va, vb = claimed(api, a)["id"], claimed(api, b)["id"]
    assert api.codes(order(person=a, campaign_id=HZ)) == ["voucher_required"]
    assert api.codes(order(person=a, campaign_id=HZ, voucher_id="vc_unknown")) == [
        "voucher_not_found"
    ]
    assert api.codes(order(person=a, campaign_id=HZ, voucher_id=vb)) == ["voucher_not_yours"]
    # a voucher of another campaign
    vr = claimed(api, a, RACE)["id"]
    assert api.codes(order(person=a, campaign_id=HZ, voucher_id=vr)) == ["voucher_not_found"]
    red = api.granted(order(person=a, campaign_id=HZ, voucher_id=va))
    assert api.codes(order(person=a, campaign_id=HZ, voucher_id=va)) == ["voucher_used"]
    r = api.post(f"/v1/redemptions/{red['id']}/void", {})
    assert r.status_code == 200, r.text
    assert voucher(api, va)["status"] == "claimed"  # usable again
    r = api.post(f"/v1/campaigns/{HZ}/claims", claim_body(person()))  # no Idempotency-Key
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
    r = api.get("/v1/vouchers/vc_unknown")
    assert r.status_code == 404 and r.json()["code"] == "voucher_not_found", r.text
    r = api.post("/v1/campaigns/chengdu-2025-spring/claims", claim_body(person()),
                 headers={"Idempotency-Key": "k"})  # fmt: skip
    assert declined(r) == ["campaign_not_found"]  # not served here: as a redemption's
    bad = claim_body(person())
    bad["person"]["real_name_verified"] = False
    del bad["device_location"]
    r = api.post(f"/v1/campaigns/{HZ}/claims", bad, headers={"Idempotency-Key": "kb"})
    assert declined(r) == ["not_real_name_verified", "location_missing"]
    r = api.post(f"/v1/campaigns/{HZ}/claims", {**claim_body(person()), "x": 1},
                 headers={"Idempotency-Key": "kx"})  # fmt: skip
    assert r.status_code == 422
    r = api.get(f"/v1/campaigns/{HZ}/persons/{a}/vouchers", params={"limit": "0"})
    assert r.status_code == 422


def test_64_threads_claim_the_last_vouchers(api: Api, served: Server) -> None:
    persons = [person() for _ in range(THREADS)]
    before = api.status(RACE)["today"]  # (another test may have moved the clock a day on)
    taken_before, left = before["vouchers_claimed"], before["vouchers_left"]
    assert 0 < left < THREADS
    apis = [Api(*served.urls) for _ in range(4)]
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            rs = list(pool.map(lambda i: claim(apis[i % 4], persons[i], RACE), range(THREADS)))
    finally:
        for a in apis:
            a.close()
    won = [r.json() for r in rs if r.status_code == 201]
    lost = [declined(r) for r in rs if r.status_code != 201]
    assert len(won) == left
    assert len({v["id"] for v in won}) == len(won)
    assert lost == [["claims_sold_out"]] * (THREADS - len(won))
    today = api.status(RACE)["today"]
    assert (today["vouchers_claimed"], today["vouchers_left"], today["remaining_fen"]) == (
        taken_before + left, 0, 0)  # fmt: skip
    r = api.get(f"/public/campaigns/{RACE}", signed=False)
    assert r.status_code == 200 and r.json()["today"]["vouchers_left"] == 0
    assert r.json()["state"] == "sold_out"
    r = api.get("/v1/admin/events", as_="ops")
    assert r.status_code == 200, r.text
    gone = [e for e in r.json()["events"] if e["type"] == "vouchers.sold_out"
            and e["campaign_id"] == RACE and e["data"]["date"] == today["date"]]  # fmt: skip
    assert [e["data"]["vouchers_claimed"] for e in gone] == [taken_before + left]


def test_hours_and_expiry(api: Api) -> None:
    p = person()
    v0 = claimed(api, p)
    vid, day = v0["id"], dt.date.fromisoformat(v0["tranche_date"])
    api.set_clock(f"{day}T22:00:00+08:00")
    assert declined(claim(api, person())) == ["claim_window_closed"]
    nxt = day + dt.timedelta(days=1)
    api.set_clock(f"{nxt}T00:00:00+08:00")
    v = voucher(api, vid)
    assert (v["status"], v["returned_fen"]) == ("expired", V)
    api.set_clock(f"{nxt}T10:00:00+08:00")
    assert api.codes(order(person=p, campaign_id=HZ, voucher_id=vid)) == ["voucher_expired"]
    assert claimed(api, p)["tranche_date"] == nxt.isoformat()  # a new day, a new claim
    r = api.get(f"/v1/campaigns/{HZ}/audit", as_="audit")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.json()


def test_the_python_client_claims_and_reads(served: Server) -> None:
    from lijian.client import Credentials, LijianClient, VoucherClaimed
    from lijian.client.calls import ProblemError
    from tests.http.harness import CLIENTS

    p = person()
    with LijianClient(served.urls[-1], Credentials("unionpay", CLIENTS["unionpay"]["secret"])) as c:
        got = c.claim(HZ, claim_body(p))
        assert isinstance(got, VoucherClaimed) and got.person_id == p and got.value_fen == V
        assert c.voucher(got.id).status == "claimed"
        assert [v.id for v in c.person_vouchers(HZ, p).vouchers] == [got.id]
        again = c.claim(HZ, claim_body(p))
        assert [r.code for r in again.reasons] == ["person_claim_limit"]
        with pytest.raises(ProblemError) as e:
            c.voucher("vc_unknown")
        assert e.value.status == 404


def test_a_lottery_registers_then_draws(api: Api) -> None:
    day = dt.date.fromisoformat(api.status(LOTTO)["today"]["date"]) + dt.timedelta(days=1)
    api.set_clock(f"{day}T10:00:00+08:00")  # a day whose draw was committed before it opened
    persons = [person() for _ in range(5)]
    rs = [claim(api, p, LOTTO) for p in persons]
    assert [r.status_code for r in rs] == [202] * 5, rs[0].text
    assert [list(r.json()) for r in rs] == [["id", "status", "draw_at"]] * 5
    assert {(r.json()["status"], r.json()["draw_at"]) for r in rs} == {
        ("registered", f"{day}T10:01:00+08:00")}  # fmt: skip
    ids = [r.json()["id"] for r in rs]
    assert voucher(api, ids[0])["status"] == "registered"
    feed = api.get(f"/public/campaigns/{LOTTO}", signed=False).json()["today"]
    assert feed["draw"]["seed"] is None and len(feed["draw"]["commitment"]) == 64
    before = {k: feed["draw"][k] for k in ("registrations", "winners", "lost")}
    assert before == {"registrations": None, "winners": None, "lost": None}
    assert api.status(LOTTO)["today"]["draw"] == feed["draw"]
    api.set_clock(f"{day}T10:01:00+08:00")  # draw_at: the seed revealed, the winners drawn
    statuses = [voucher(api, vid)["status"] for vid in ids]
    assert sorted(statuses) == ["claimed", "claimed", "lost", "lost", "lost"]
    feed = api.get(f"/public/campaigns/{LOTTO}", signed=False).json()["today"]
    assert len(feed["draw"]["seed"]) == 64 and feed["vouchers_left"] == 0
    seed, commitment = feed["draw"]["seed"], feed["draw"]["commitment"]
    assert hashlib.sha256(seed.encode("ascii")).hexdigest() == commitment
    after = {k: feed["draw"][k] for k in ("registrations", "winners", "lost", "window_s")}
    assert after == {"registrations": 5, "winners": 2, "lost": 3, "window_s": 60}
    assert api.status(LOTTO)["today"]["draw"] == feed["draw"]
    winner = persons[statuses.index("claimed")]
    vid = ids[statuses.index("claimed")]
    red = api.granted(order(person=winner, campaign_id=LOTTO, voucher_id=vid))
    assert red["discount_fen"] == V
    r = api.get(f"/v1/campaigns/{LOTTO}/audit", as_="audit")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
