"""The dashboard's history of a campaign of claimed vouchers over HTTP, on every
topology (a gateway passes the pages through to the sequencer): vouchers claimed, used
and expired per day, as the ledger's daybook keeps them, beside R19's figures (a
voucher's discount on the day its order is captured). One server per topology."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import CLIENTS, Api, Server, campaign_doc, order
from tests.support import TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("http-claims-dashboard")

CID = "claims-dashboard"
V = 3_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    doc = campaign_doc(
        campaign={"id": CID, "name": CID, "budget_fen": 17 * 100 * V},
        refunds={"full_refund_restores_quota": "immediately"},
        claims={"mode": "claim", "voucher_value_fen": V, "valid_for": "P2D"},
    )
    s = Server(Path(tmp_path_factory.mktemp(f"claims-dash-{topology}")), campaigns=[doc],
               topology=topology)  # fmt: skip
    try:
        yield s
    finally:
        s.close()


def claimed(api: Api, person: str) -> str:
    body = {
        "person": {"id": person, "real_name_verified": True},
        "device_location": {"lng": TIANFU_SQUARE[0], "lat": TIANFU_SQUARE[1], "crs": "gcj02"},
    }
    r = api.post(f"/v1/campaigns/{CID}/claims", body,
                 headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def pay(api: Api, person: str, voucher_id: str) -> None:
    red = api.granted(order(person=person, campaign_id=CID, voucher_id=voucher_id))
    assert red["discount_fen"] == V
    r = api.post(f"/v1/redemptions/{red['id']}/capture")
    assert r.status_code == 200, r.text


def dashboard_history(base_url: str) -> list[dict[str, Any]]:
    """Log in as the auditor (the login form's CSRF token), read the history."""
    with httpx.Client(base_url=base_url, timeout=30.0) as c:
        m = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert m
        form = {"csrf": m.group(1), "username": "audit", "password": CLIENTS["audit"]["secret"]}
        r = c.post("/login", data=form)
        assert r.status_code == 303, r.text
        r = c.get(f"/dashboard/api/history?campaign={CID}")
        assert r.status_code == 200, r.text
        days: list[dict[str, Any]] = r.json()["days"]
        return days


def test_claims_use_and_expiry_per_day(served: Server) -> None:
    api = Api(*served.urls)
    try:
        day1 = dt.date.fromisoformat(api.status(CID)["today"]["date"])
        day2, day3 = day1 + dt.timedelta(days=1), day1 + dt.timedelta(days=2)
        vs = {p: claimed(api, p) for p in ("p-1", "p-2", "p-3")}
        pay(api, "p-1", vs["p-1"])  # used on the day it was claimed
        api.set_clock(f"{day2}T10:00:00+08:00")
        pay(api, "p-2", vs["p-2"])  # used the next day
        claimed(api, "p-4")  # valid until day 4: not expired yet
        api.set_clock(f"{day3}T12:00:00+08:00")  # p-3's voucher expired unused at 10:00
        r = api.get(f"/v1/vouchers/{vs['p-3']}")
        assert r.status_code == 200 and r.json()["status"] == "expired", r.text
        days = {d["date"]: d for d in dashboard_history(served.urls[0])}
    finally:
        api.close()
    keys = ("vouchers_claimed", "vouchers_used", "vouchers_expired", "vouchers_expired_fen",
            "count", "discount_fen", "net_subsidy_fen")  # fmt: skip
    got = {d: tuple(days[d.isoformat()][k] for k in keys) for d in (day1, day2, day3)}
    assert got == {
        day1: (3, 1, 0, 0, 1, V, V),
        day2: (1, 1, 0, 0, 1, V, V),
        day3: (0, 0, 1, V, 0, 0, 0),  # an unused voucher expired: released, nothing owed
    }
