"""Every decline code of docs/API.md (R20) over HTTP, and geography (R8) in three CRSs.

Declines that depend only on the order run on the shared server; those that need the
clock, a tiny budget or a count limit run on a server of their own that this module
walks through campaign time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.geo.geo_testdata import ALL_CRS, DEYANG_GCJ02, JIEFANGBEI_GCJ02, from_gcj02
from tests.http.harness import Api, Server, campaign_doc, order
from tests.support import TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("http-main")

STATELESS = [
    ("not_real_name_verified", {"person": {"id": "p-nrn", "real_name_verified": False}}),
    ("location_missing", {"device_location": None}),
    (
        "location_outside_city",
        {
            "device_location": {
                "lng": JIEFANGBEI_GCJ02[0],
                "lat": JIEFANGBEI_GCJ02[1],
                "crs": "gcj02",
            }
        },
    ),
    ("address_outside_city", {"delivery_address": {"adcode": "500103"}}),
    ("address_outside_city", {"delivery_address": None}),
    ("not_campaign_goods", {"sku": "JD-NOT-IN-CATALOGUE"}),
    ("not_campaign_goods", {"sku": "JD-TOY-GUN"}),  # in the catalogue, withdrawn
    ("platform_not_participating", {"platform": "taobao"}),
    ("payment_channel_not_supported", {"payment_channel": "alipay"}),
    ("other_government_subsidy", {"other_government_subsidy": True}),
    ("discount_zero", {"price_fen": 3, "quantity": 2, "platform_discount_fen": 0}),
    ("campaign_not_found", {"campaign_id": "hangzhou-2025"}),
]


@pytest.mark.parametrize(("code", "change"), STATELESS, ids=[c for c, _ in STATELESS])
def test_a_stateless_decline(api: Api, code: str, change: dict[str, object]) -> None:
    before = api.status()
    codes = api.codes(order(**change))  # type: ignore[arg-type]
    if code == "platform_not_participating":  # its SKUs are not in the catalogue either
        assert codes == [code, "not_campaign_goods"]
    else:
        assert codes == [code]
    assert api.status() == before


def test_an_order_must_be_all_campaign_goods(api: Api) -> None:
    body = order()
    body["items"].append({"sku": "JD-NOPE", "quantity": 1, "unit_price_fen": 100})
    assert api.codes(body) == ["not_campaign_goods"]


def test_a_decline_lists_every_reason(api: Api) -> None:
    body = order(
        payment_channel="alipay",
        other_government_subsidy=True,
        person={"id": "p-many", "real_name_verified": False},
        device_location=None,
    )
    assert set(api.codes(body)) == {
        "payment_channel_not_supported",
        "other_government_subsidy",
        "not_real_name_verified",
        "location_missing",
    }


def test_the_person_cap_is_granted_partially_then_declines(api: Api) -> None:
    pid = "p-cap-" + order()["order_id"]
    big = api.granted(order(person=pid, price_fen=400_000, quantity=3, platform_discount_fen=0))
    assert big["discount_fen"] == 150_000  # 15% of 1,200,000 is 180,000: capped (R7)
    assert big["capped"] is True
    assert api.codes(order(person=pid)) == ["person_cap_reached"]


@pytest.mark.parametrize("crs", ALL_CRS)
def test_tianfu_square_is_in_chengdu_in_every_crs(api: Api, crs: str) -> None:
    lng, lat = from_gcj02(*TIANFU_SQUARE, crs)
    r = api.post("/v1/quotes", order(device_location={"lng": lng, "lat": lat, "crs": crs}))
    assert r.json()["eligible"] is True, r.json()


@pytest.mark.parametrize("place", [JIEFANGBEI_GCJ02, DEYANG_GCJ02], ids=["chongqing", "deyang"])
@pytest.mark.parametrize("crs", ALL_CRS)
def test_chongqing_and_deyang_are_outside(api: Api, crs: str, place: tuple[float, float]) -> None:
    lng, lat = from_gcj02(*place, crs)
    body = order(device_location={"lng": lng, "lat": lat, "crs": crs})
    r = api.post("/v1/quotes", body)
    assert [x["code"] for x in r.json()["reasons"]] == ["location_outside_city"]
    assert api.codes(body) == ["location_outside_city"]


# ------------------------------------------------------------- through time
TINY = "tiny-2025"
LIMITS = "limits-2025"
NO_STACKING = "no-stacking-2025"


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    tiny = campaign_doc(
        campaign={
            "id": TINY,
            "budget_fen": 5_000,
            "start_date": "2025-02-12",
            "end_date": "2025-02-12",
        }
    )
    limits = campaign_doc(campaign={"id": LIMITS}, limits={"person_redemptions_per_day": 1})
    no_stacking = campaign_doc(
        campaign={"id": NO_STACKING}, eligibility={"allow_platform_discounts": False}
    )
    s = Server(
        Path(tmp_path_factory.mktemp("http-timeline")),
        campaigns=[campaign_doc(), tiny, limits, no_stacking],
        clock="manual:2025-02-11T09:00:00+08:00",
        topology=topology,
    )
    try:
        yield s
    finally:
        s.close()


def test_declines_and_expiry_through_campaign_time(timeline: Server) -> None:
    api = timeline.api
    assert api.codes(order()) == ["campaign_not_started"]
    assert api.status()["state"] == "scheduled"

    api.set_clock("2025-02-12T09:59:00+08:00")
    assert api.codes(order()) == ["tranche_not_open"]
    quote = api.post("/v1/quotes", order()).json()
    assert [x["code"] for x in quote["reasons"]] == ["tranche_not_open"]

    api.set_clock("2025-02-12T10:00:00+08:00")
    held = api.granted(order())
    assert api.status()["state"] == "open"

    # R4 and R1: the tiny campaign's only tranche (5,000 fen) covers one discount of 3,720.
    api.granted(order(campaign_id=TINY))
    assert api.codes(order(campaign_id=TINY)) == ["sold_out", "budget_exhausted"]
    assert api.status(TINY)["state"] == "sold_out"
    public = api.get(f"/public/campaigns/{TINY}", signed=False).json()
    assert public["state"] == "sold_out"
    assert public["today"]["remaining_fen"] == 1_280
    assert public["today"]["sold_out_at"] == "2025-02-12T10:00:00+08:00"
    # A smaller order still fits (no partial grant, but smaller orders may).
    assert (
        api.granted(order(campaign_id=TINY, price_fen=4_000, quantity=1, platform_discount_fen=0))[
            "discount_fen"
        ]
        == 600
    )

    # R6: one redemption per person per day in the "limits" campaign.
    pid = "p-limited"
    api.granted(order(campaign_id=LIMITS, person=pid))
    assert api.codes(order(campaign_id=LIMITS, person=pid)) == ["person_count_limit"]

    # R15 as a setting: a campaign may refuse to stack with platform discounts.
    assert api.codes(order(campaign_id=NO_STACKING)) == ["platform_discount_not_allowed"]
    api.granted(order(campaign_id=NO_STACKING, platform_discount_fen=0))

    # R15: one order draws on at most one campaign of this engine.
    body = order()
    api.granted(body)
    assert api.codes(dict(body, campaign_id=LIMITS)) == ["other_government_subsidy"]

    # R16: an unconfirmed hold expires after 15 minutes; its money returns.
    before = api.status()["today"]["remaining_fen"]
    api.post("/v1/admin/clock", {"advance_s": 901}, as_="ops")
    r = api.get(f"/v1/redemptions/{held['id']}")
    assert r.json()["status"] == "expired"
    assert api.status()["today"]["remaining_fen"] > before
    r = api.post(f"/v1/redemptions/{held['id']}/capture")
    assert r.status_code == 409
    assert r.json()["code"] == "hold_not_active"

    api.set_clock("2025-03-01T00:00:00+08:00")
    assert api.codes(order()) == ["campaign_ended"]
    assert api.status()["state"] == "ended"

    # The manual clock only moves forward.
    r = api.post("/v1/admin/clock", {"now": "2025-01-01T00:00:00+08:00"}, as_="ops")
    assert r.status_code == 409
    assert r.json()["code"] == "clock_backwards"
    assert api.status()["now"] == "2025-03-01T00:00:00+08:00"
