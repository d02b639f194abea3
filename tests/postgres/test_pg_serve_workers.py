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


@pytest.mark.parametrize(
    "days_before_today,today_grants_max",
    [
        (0, GRANTS),  # the campaign starts today: today's tranche holds GRANTS discounts
        # Not yet: a campaign that started on an earlier day. The nodes now write the
        # missed days' open and close first (EscrowWriter._catch_up), but the audit of
        # that log still fails now and then at its first entry (docs/SCALE-OUT.md).
    ],
)
def test_two_workers_never_overspend_and_audit_clean(
    tmp_path, pg_url, days_before_today, today_grants_max
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
    catalog = tmp_path / "catalog.ndjson"
    catalog.write_bytes(catalog_ndjson())
    # Every worker loads the catalogue from the database when it starts.
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
                    lambda i: server.api.redeem(order(f"O-{i}")).status_code, range(3 * GRANTS)
                )
            )
    finally:
        assert server.stop() == 0, server.log()
        server.api.close()
    granted = codes.count(201)
    # Never one grant too many. Across nodes, escrow is not exactly first come first
    # served at the very end: a node can decline while another still holds a slice
    # (docs/SCALE-OUT.md, "stranding"): the count is bounded above, not pinned.
    assert 0 < granted <= today_grants_max, codes
    assert codes.count(200) == 3 * GRANTS - granted  # the rest: declined, sold out
    audit = subprocess.run(
        [sys.executable, "-m", "lijian.cli", "audit", "--db", pg_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
