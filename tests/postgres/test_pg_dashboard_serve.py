"""The dashboard of ``lijian serve`` on PostgreSQL, one process and ``--workers 2``.

With ``--workers 2`` the server is one sequencer (the one engine, the dashboard) and two
gateways that pass the dashboard's pages through to it. Signed API calls grant and
capture; then the dashboard's event stream, history, settlement and CSV (through
whichever gateway the connection reaches) must show exactly the figures of the ledger
replayed from zero (what ``lijian audit`` replays), and the audit must pass. A login
holds on every connection, and a logout ends the session on all of them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lijian.audit import audit_db
from lijian.core.settlement import settlement, settlement_csv
from lijian.core.views import status_view
from tests.http.harness import (
    CLIENTS,
    LIJIAN,
    Server,
    campaign_doc,
    catalog_ndjson,
    dump_toml,
    order,
)
from tests.postgres.pgutil import replay

pytestmark = pytest.mark.xdist_group("postgres")
TZ = ZoneInfo("Asia/Shanghai")
DISCOUNT_FEN = 3_720  # harness.order(): 15% of 24,800
TRANCHE_GRANTS = 30
STREAM_TIMEOUT_S = 30.0
CONNECTIONS = 8  # fresh connections: the kernel hands each to one gateway
MONEY = ("budget_fen", "granted_fen", "held_fen", "clawed_back_fen")
TODAY = ("date", "released_fen", "held_fen", "granted_fen", "remaining_fen")


def login(base: str, user: str = "ops") -> httpx.Cookies:
    with httpx.Client(base_url=base, timeout=30.0) as c:
        page = c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        # A fresh connection for the POST: with two gateways it may reach the other one,
        # which passes it to the same dashboard as the first.
        with httpx.Client(base_url=base, timeout=30.0, cookies=c.cookies) as c2:
            r = c2.post(
                "/login",
                data={
                    "csrf": token.group(1),
                    "username": user,
                    "password": CLIENTS[user]["secret"],
                },
            )
            assert r.status_code == 303 and r.headers["location"] == "/", r.text
            return httpx.Cookies({"lijian_session": r.cookies["lijian_session"]})


def first_snapshot(base: str, cookies: httpx.Cookies, cid: str) -> dict[str, Any]:
    """The first ``snapshot`` event of a fresh stream (a fresh connection)."""
    with (
        httpx.Client(base_url=base, timeout=STREAM_TIMEOUT_S, cookies=cookies) as c,
        c.stream("GET", f"/dashboard/events?campaign={cid}") as r,
    ):
        assert r.status_code == 200, r.read()
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                out: dict[str, Any] = json.loads(line[6:])
                return out
    raise AssertionError("the stream ended without a snapshot")


def get(base: str, cookies: httpx.Cookies, path: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30.0, cookies=cookies) as c:
        return c.get(path)


def in_the_browser(base: str, remaining_fen: int) -> None:
    """The page itself through a gateway: the ledger's remaining, the audit, no script
    error (Debian's Chromium, as tests/dashboard; missing: the test fails)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=base, viewport={"width": 1440, "height": 1600})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Under a loaded CI machine the first page load through a gateway's proxy has
            # been seen to stall once (open question, see docs/DASHBOARD.md): one retry.
            try:
                page.goto("/")
                page.wait_for_url("**/login")
            except PlaywrightTimeout:
                page.goto("/")
                page.wait_for_url("**/login")
            page.fill("#username", "ops")
            page.fill("#password", CLIENTS["ops"]["secret"])
            page.click("#submit")
            page.wait_for_url("**/")
            page.locator(".live.on").wait_for()
            page.locator("#t-remaining", has_text=f"¥{remaining_fen / 100:,.2f}").wait_for()
            page.locator("#audit-badge.ok").wait_for(timeout=40_000)
            page.locator("#audit li", has_text="R1").wait_for()
            assert page.locator("#cluster, #declines-scope").count() == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-workers.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_served_dashboard_figures_equal_the_audited_ledger(tmp_path, pg_url, workers):
    today = dt.datetime.now(TZ).date()
    day = today.isoformat()
    doc = campaign_doc(
        campaign={
            "start_date": day,
            "end_date": (today + dt.timedelta(days=1)).isoformat(),
            "daily_open": "00:00",
            "budget_fen": 2 * TRANCHE_GRANTS * DISCOUNT_FEN,
        }
    )
    cid = doc["campaign"]["id"]
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(dump_toml(doc), encoding="utf-8")
    catalog = tmp_path / "catalog.ndjson"
    catalog.write_bytes(catalog_ndjson())
    imp = subprocess.run(
        [str(LIJIAN), "catalog", "import", str(catalog), "--db", pg_url, "--campaign",
         str(campaign)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imp.returncode == 0, imp.stdout + imp.stderr
    server = Server(
        tmp_path / "srv",
        campaigns=[doc],
        clock=None,  # several workers refuse a manual clock
        catalog=False,
        extra_args=["--workers", str(workers)],
        db=pg_url,  # type: ignore[arg-type]
    )
    try:
        api = server.api
        granted = []
        for i in range(TRANCHE_GRANTS + 5):  # the last ones are declined: sold out
            r = api.redeem(order(f"O-{i}", sku=f"JD-{i % 20}"))
            assert r.status_code in (200, 201), r.text
            if r.status_code == 201:
                granted.append(r.json()["id"])
        assert len(granted) >= TRANCHE_GRANTS - 2
        for n, rid in enumerate(granted):  # captures and voids reach either gateway
            path = f"/v1/redemptions/{rid}/" + ("void" if n % 5 == 0 else "capture")
            r = api.post(path)
            assert r.status_code == 200, r.text

        truth = replay(pg_url)
        want = status_view(truth, cid, int(time.time() * 1000))
        cookies = login(server.url)
        for _ in range(1 if workers == 1 else CONNECTIONS):
            snap = first_snapshot(server.url, cookies, cid)
            assert {k: snap["budget"][k] for k in MONEY} == {k: want[k] for k in MONEY}
            assert {k: snap["today"][k] for k in TODAY} == {k: want["today"][k] for k in TODAY}
            assert snap["feed"]["ok"] and snap["feed"]["seq"] > 0, snap["feed"]
            assert snap["audit"]["ok"], snap["audit"]
            assert snap["audit"]["entries"] == truth.entries_applied
            got = sum(p["net_subsidy_fen"] for p in snap["platforms"])
            assert got == settlement(truth, cid, day)["totals"]["net_subsidy_fen"]
            assert snap["grants_per_s"]["holds_today"] == len(granted)
            assert snap["state"] == ("sold_out" if want["today"]["remaining_fen"] == 0 else "open")
            assert "cluster" not in snap
        for _ in range(4):  # reports, through whichever gateway answers
            rep = get(server.url, cookies, f"/dashboard/api/settlement?campaign={cid}&date={day}")
            assert rep.status_code == 200 and rep.json() == settlement(truth, cid, day)
            csv = get(server.url, cookies, f"/dashboard/settlement.csv?campaign={cid}&date={day}")
            assert csv.text == settlement_csv(settlement(truth, cid, day))
            hist = get(server.url, cookies, f"/dashboard/api/history?campaign={cid}").json()
            row = {r["date"]: r for r in hist["days"]}[day]
            t = truth.books[cid].tranches[day]
            assert (row["released_fen"], row["granted_fen"]) == (t.released_fen, t.granted_fen)
        rep = audit_db(pg_url)
        assert rep.ok and rep.entries == truth.entries_applied
        if workers == 2:  # the page itself, through a gateway's pass-through
            in_the_browser(server.url, want["today"]["remaining_fen"])

        # A logout ends the session on every connection, through either gateway.
        with httpx.Client(base_url=server.url, timeout=30.0, cookies=cookies) as c:
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
            assert token
            r = c.post("/logout", data={"csrf": token.group(1)})
            assert r.status_code == 303
        for _ in range(20):
            r = get(server.url, cookies, f"/dashboard/api/history?campaign={cid}")
            assert r.status_code == 401, "a logged-out session still works"
    finally:
        assert server.stop() == 0, server.log()
        server.api.close()
