"""An engine loads every campaign's geography when it starts, before it serves: the
first redemption must not wait for a city's boundary (its import and index take about
a second on a busy machine, on the loop, and every request behind it waits too)."""

from __future__ import annotations

from pathlib import Path

from lijian.blocking import Blocking
from lijian.clock import ManualClock
from lijian.core.rules import GeoPort
from lijian.engine import Engine
from lijian.geo import load_city
from tests.support import at, catalog, order, settings


def test_every_campaigns_geography_is_loaded_at_start_and_never_again(tmp_path: Path) -> None:
    asked: list[str] = []

    def loader(adcode: str) -> GeoPort:
        asked.append(adcode)
        return load_city(adcode)

    s = settings()
    eng = Engine([s], tmp_path / "l.db", clock=ManualClock(at("2025-02-12 10:00")),
                 geo_loader=loader)  # fmt: skip
    try:
        assert asked == [s.campaign.city_adcode]  # started: loaded before any request
        Blocking(eng).catalog_upsert(list(catalog().rows()))
        out = Blocking(eng).redeem(order(1), "unionpay", "k-1", "f-1")
        assert out.status == 201, out.body
        assert asked == [s.campaign.city_adcode]  # the first redemption found it loaded
    finally:
        eng.close()


def test_a_campaign_that_asks_no_location_loads_no_boundary(tmp_path: Path) -> None:
    asked: list[str] = []

    def loader(adcode: str) -> GeoPort:
        asked.append(adcode)
        return load_city(adcode)

    s = settings(eligibility={"require_device_in_city": False,
                              "require_address_in_city": False})  # fmt: skip
    eng = Engine([s], tmp_path / "l.db", clock=ManualClock(at("2025-02-12 10:00")),
                 geo_loader=loader)  # fmt: skip
    try:
        assert asked == []
    finally:
        eng.close()
