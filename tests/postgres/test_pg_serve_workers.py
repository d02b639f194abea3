"""`lijian serve --workers 2` on PostgreSQL: two escrow nodes behind one port sell out a
tranche without one grant too many, and the shared ledger audits clean afterwards."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest

from tests.http.harness import LIJIAN, Server, campaign_doc, catalog_ndjson, dump_toml, order

pytestmark = pytest.mark.xdist_group("postgres")

GRANTS = 40  # the tranche holds exactly this many 3,720-fen discounts
DISCOUNT_FEN = 3_720


def import_catalog(tmp_path, campaign, pg_url):
    """Every worker loads the catalogue from the database when it starts (a PUT on one
    worker reaches the others within a housekeeping period: test_pg_nodes covers it)."""
    catalog = tmp_path / "catalog.ndjson"
    catalog.write_bytes(catalog_ndjson())
    imp = subprocess.run(
        [
            str(LIJIAN),
            "catalog",
            "import",
            str(catalog),
            "--db",
            pg_url,
            "--campaign",
            str(campaign),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imp.returncode == 0, imp.stdout + imp.stderr


@pytest.mark.parametrize(
    "days_before_today,today_grants",
    [
        (0, GRANTS),  # the campaign starts today: today's tranche holds GRANTS discounts
        # It started two days ago and nobody drew on those days: the nodes write the
        # missed days' open and close (with their rollover, R4) before today's open, and
        # today's tranche holds three days' money.
        (2, 3 * GRANTS),
    ],
)
def test_two_workers_sell_out_exactly_and_audit_clean(
    tmp_path, pg_url, days_before_today, today_grants
):
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    doc = campaign_doc(
        campaign={
            "start_date": (today - dt.timedelta(days=days_before_today)).isoformat(),
            "end_date": (today + dt.timedelta(days=1)).isoformat(),
            "daily_open": "00:00",
            "budget_fen": (days_before_today + 2) * GRANTS * DISCOUNT_FEN,
        }
    )
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(dump_toml(doc), encoding="utf-8")
    import_catalog(tmp_path, campaign, pg_url)
    server = Server(
        tmp_path / "srv",
        campaigns=[doc],
        clock=None,
        catalog=False,
        extra_args=["--workers", "2"],
        db=pg_url,  # type: ignore[arg-type]
    )
    try:
        with ThreadPoolExecutor(64) as pool:
            codes = list(
                pool.map(
                    lambda i: server.api.redeem(order(f"O-{i}")).status_code,
                    range(today_grants + GRANTS),
                )
            )
    finally:
        assert server.stop() == 0, server.log()
        server.api.close()
    granted = codes.count(201)
    # Exactly: never one grant too many, and first come first served to the last grant
    # across nodes (a starved node drains the others' slices rather than decline).
    assert granted == today_grants, codes
    assert codes.count(200) == GRANTS  # the rest: declined, sold out
    audit = subprocess.run(
        [sys.executable, "-m", "lijian.cli", "audit", "--db", pg_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_two_workers_share_one_manual_clock(tmp_path, pg_url):
    doc = campaign_doc()
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(dump_toml(doc), encoding="utf-8")
    import_catalog(tmp_path, campaign, pg_url)
    server = Server(
        tmp_path / "srv",
        campaigns=[doc],
        catalog=False,
        clock="manual:2025-02-12T09:59:00+08:00",
        extra_args=["--workers", "2"],
        db=pg_url,  # type: ignore[arg-type]
    )
    try:
        early = [server.api.redeem(order(f"E-{i}")).json() for i in range(4)]
        assert {r["reasons"][0]["code"] for r in early} == {"tranche_not_open"}
        moved = server.api.post("/v1/admin/clock", {"advance_s": 60}, as_="ops")
        assert moved.status_code == 200, moved.text
        # every request after the move, on whichever worker, sees 10:00: the tranche opens
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: server.api.redeem(order(f"O-{i}")), range(16)))
        assert [r.status_code for r in answers] == [201] * 16, [r.text for r in answers]
        back = server.api.post("/v1/admin/clock", {"now": "2025-02-12T09:00:00+08:00"}, as_="ops")
        assert back.json()["code"] == "clock_backwards"  # forward only, for all workers
    finally:
        assert server.stop() == 0, server.log()
        server.api.close()
