"""Admin and reports: campaign settings, settlement (JSON and CSV), audit."""

from __future__ import annotations

import csv
import io

import pytest

from tests.http.harness import Api, order
from tests.support import CID, seed_doc

pytestmark = pytest.mark.xdist_group("http-main")

SETTLEMENT = f"/v1/campaigns/{CID}/settlement?date=2025-02-12"


def test_the_loaded_campaigns_and_their_settings(api: Api) -> None:
    r = api.get("/v1/campaigns", as_="ops")
    assert r.status_code == 200
    [settings] = r.json()["campaigns"]
    seed = seed_doc()
    assert settings["campaign"]["id"] == CID
    assert settings["campaign"]["budget_fen"] == seed["campaign"]["budget_fen"]
    assert settings["campaign"]["start_date"] == "2025-02-12"
    assert settings["limits"] == seed["limits"]
    one = api.get(f"/v1/campaigns/{CID}", as_="audit")
    assert one.status_code == 200
    assert one.json() == settings
    assert api.get("/v1/campaigns/nope", as_="ops").status_code == 404


def test_settlement_counts_captures_and_clawbacks_of_the_day(api: Api) -> None:
    before = api.get(SETTLEMENT, as_="ops").json()
    a = api.granted(order())  # captured, then partly refunded
    b = api.granted(order(platform="vip", sku="VIP-3"))  # captured
    api.granted(order())  # held only: not counted
    for rid in (a["id"], b["id"]):
        api.post(f"/v1/redemptions/{rid}/capture")
    refund = api.post(
        f"/v1/redemptions/{a['id']}/refunds",
        {"refund_id": "s-1", "payable_fen": 10_000},
        headers={"Idempotency-Key": a["id"]},
    ).json()
    after = api.get(SETTLEMENT, as_="audit").json()
    assert after["campaign_id"] == CID
    assert after["date"] == "2025-02-12"

    def delta(platform: str, field: str) -> int:
        rows = {r["platform"]: r for r in after["platforms"]}
        old = {r["platform"]: r for r in before["platforms"]}
        return int(rows[platform][field] - old[platform][field])

    assert delta("jd", "count") == 1
    assert delta("jd", "gmv_fen") == 24_800
    assert delta("jd", "discount_fen") == 3_720
    assert delta("jd", "clawback_fen") == refund["clawback_fen"] == 1_500
    assert delta("jd", "net_subsidy_fen") == 3_720 - 1_500
    assert delta("vip", "count") == 1
    for field in ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen"):
        assert after["totals"][field] == sum(r[field] for r in after["platforms"])


def test_settlement_as_csv_has_the_same_rows(api: Api) -> None:
    as_json = api.get(SETTLEMENT, as_="ops").json()
    r = api.get(SETTLEMENT, as_="ops", headers={"accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == [
        "date",
        "platform",
        "count",
        "gmv_fen",
        "discount_fen",
        "clawback_fen",
        "net_subsidy_fen",
    ]
    by_platform = {row["platform"]: row for row in rows}
    for p in as_json["platforms"]:
        row = by_platform[p["platform"]]
        assert {k: int(v) for k, v in row.items() if k not in ("date", "platform")} == {
            k: v for k, v in p.items() if k != "platform"
        }
    assert int(by_platform["TOTAL"]["net_subsidy_fen"]) == as_json["totals"]["net_subsidy_fen"]


def test_another_day_has_its_own_figures(api: Api) -> None:
    r = api.get(f"/v1/campaigns/{CID}/settlement?date=2025-02-20", as_="ops")
    assert r.json()["totals"] == {
        "count": 0,
        "gmv_fen": 0,
        "discount_fen": 0,
        "clawback_fen": 0,
        "net_subsidy_fen": 0,
    }


def test_the_audit_passes(api: Api) -> None:
    r = api.get(f"/v1/campaigns/{CID}/audit", as_="audit")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["campaign_id"] == CID
    assert body["entries"] > 0
    assert body["checks"] and all(c["ok"] for c in body["checks"])
    assert api.get("/v1/campaigns/nope/audit", as_="audit").status_code == 404
