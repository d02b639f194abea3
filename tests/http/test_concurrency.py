"""64 concurrent clients rush a tranche that sells out, on the real clock.

The tranche holds exactly 40 discounts of 3,720 fen (plus 1,000 fen that fit none):
first come, first served means exactly 40 grants, every other request declined as sold
out, and the status figures equal the sum of what was granted, to the fen.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.http.harness import Api, Server, campaign_doc, metric, order

pytestmark = pytest.mark.xdist_group("http-rush")

RUSH = "rush"
DISCOUNT_FEN = 3_720
GRANTS = 40
LEFTOVER_FEN = 1_000
CLIENTS = 64
REQUESTS_PER_CLIENT = 3
TZ = ZoneInfo("Asia/Shanghai")


def _today_away_from_midnight() -> dt.date:
    """Today in Chengdu; wait out the last minute before midnight so the day holds."""
    now = dt.datetime.now(TZ)
    to_midnight_s = (24 * 3600) - (now.hour * 3600 + now.minute * 60 + now.second)
    if to_midnight_s < 60:
        time.sleep(to_midnight_s + 1)
    return dt.datetime.now(TZ).date()


@pytest.fixture(scope="module")
def rush(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    today = _today_away_from_midnight().isoformat()
    doc = campaign_doc(
        campaign={
            "id": RUSH,
            "budget_fen": GRANTS * DISCOUNT_FEN + LEFTOVER_FEN,
            "start_date": today,
            "end_date": today,
            "daily_open": "00:00",
        }
    )
    s = Server(
        Path(tmp_path_factory.mktemp("http-rush")), campaigns=[doc], clock=None, topology=topology
    )
    try:
        yield s
    finally:
        s.close()


def test_64_clients_get_exactly_the_first_come_first_served_count(rush: Server) -> None:
    barrier = threading.Barrier(CLIENTS)
    results: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(CLIENTS)]

    def client(i: int) -> None:
        api = Api(rush.urls[i % len(rush.urls)])  # one connection per client; gateways alternate
        try:
            barrier.wait()
            for j in range(REQUESTS_PER_CLIENT):
                r = api.redeem(order(campaign_id=RUSH, person=f"p-{i}-{j}"))
                results[i].append((r.status_code, r.json()))
        finally:
            api.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    answers = [a for per_client in results for a in per_client]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    granted = [body for status, body in answers if status == 201]
    declined = [body for status, body in answers if status == 200]
    assert len(granted) == GRANTS
    assert len(declined) == len(answers) - GRANTS
    assert all(d["status"] == "declined" for d in declined)
    assert all(
        [x["code"] for x in d["reasons"]] == ["sold_out", "budget_exhausted"] for d in declined
    )
    assert len({g["id"] for g in granted}) == GRANTS

    api = rush.api
    st = api.status(RUSH)
    held_sum = sum(g["discount_fen"] for g in granted)
    assert held_sum == GRANTS * DISCOUNT_FEN
    assert st["held_fen"] == st["today"]["held_fen"] == held_sum
    assert st["today"]["remaining_fen"] == LEFTOVER_FEN
    assert st["state"] == "sold_out"
    assert st["today"]["sold_out_at"] is not None

    for g in granted:
        assert api.post(f"/v1/redemptions/{g['id']}/capture").status_code == 200
    st = api.status(RUSH)
    assert st["granted_fen"] == held_sum
    assert st["held_fen"] == 0
    assert st["today"]["remaining_fen"] == LEFTOVER_FEN
    audit = api.get(f"/v1/campaigns/{RUSH}/audit", as_="audit").json()
    assert audit["ok"] is True, audit
    metrics = api.get("/metrics", signed=False).text
    assert metric(metrics, f'lijian_grants_total{{campaign="{RUSH}"}}') == GRANTS
    assert metric(metrics, f'lijian_tranche_remaining_fen{{campaign="{RUSH}"}}') == LEFTOVER_FEN

    # This server runs on the real clock: it cannot be moved (one test per server, because
    # pytest-xdist may run separate tests of a module on separate workers).
    r = api.post("/v1/admin/clock", {"advance_s": 60}, as_="ops")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
