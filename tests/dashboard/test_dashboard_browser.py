"""The dashboard in a real browser (Debian's Chromium via Playwright) on a real server."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from tests.dashboard.client import CID
from tests.dashboard.conftest import ARTIFACTS, USERS, login

pytestmark = pytest.mark.xdist_group("lijian-serve")
LIVE_LAG_MAX_S = 2.0  # the feed ticks every 0.5 s; the rest is slack for a busy CI machine


def test_login_is_refused_with_a_wrong_password(page):
    login(page, "ops", "not-the-secret")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "用户名或密码错误" in error.inner_text()
    assert page.url.endswith("/login")
    login(page, "nobody", USERS["ops"][0])  # a real password under a wrong name
    page.locator("#error").wait_for(state="visible")
    cookies = {c["name"] for c in page.context.cookies()}
    assert "lijian_session" not in cookies
    page.click("#lang")
    assert page.locator("#error").inner_text() == "Wrong user name or password"


def wait_text(page, selector, text, timeout_s=10.0):
    """Seconds until ``selector`` shows ``text`` (polled by the browser itself)."""
    t0 = time.monotonic()
    page.wait_for_function(
        "([sel, txt]) => { const n = document.querySelector(sel); return n && "
        "n.textContent.trim() === txt; }",
        arg=[selector, text],
        timeout=timeout_s * 1000,
    )
    return time.monotonic() - t0


def test_numbers_change_live_as_redemptions_arrive(page, server):
    server.open_campaign()
    login(page, "ops", USERS["ops"][0])
    page.wait_for_url("**/")
    page.locator(".live.on").wait_for()
    page.evaluate("window.__no_reload_marker = 42")
    holds = int(page.locator("#g-holds").inner_text().replace(",", ""))
    jd_before = page.locator('#platforms tr[data-platform="jd"] td').nth(1).inner_text()

    for i in range(3):
        server.redeem("jd" if i < 2 else "vip")
        lag = wait_text(page, "#g-holds", str(holds + i + 1))
        assert lag < LIVE_LAG_MAX_S, f"the page was {lag:.2f} s behind the ledger"
    jd_after = page.locator('#platforms tr[data-platform="jd"] td').nth(1)
    assert jd_after.inner_text() != jd_before
    status = server.ops.request("GET", f"/v1/campaigns/{CID}/status").json()
    remaining = status["today"]["remaining_fen"]
    wait_text(page, "#t-remaining", f"¥{remaining / 100:,.2f}")

    server.redeem(real_name=False)  # a decline, counted by reason
    page.locator("#declines .hbar", has_text="未实名认证").wait_for()
    page.locator("#audit-badge", has_text="通过").wait_for(timeout=40_000)
    assert page.evaluate("window.__no_reload_marker") == 42  # same page: no reload

    history = '#history tr[data-date="2025-02-12"] td:nth-child(6)'  # grants that day
    wait_text(page, history, page.locator("#g-holds").inner_text())

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.click("#lang")
    page.locator('h2[data-i18n="today_tranche"]', has_text="Today's tranche").wait_for()
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"), full_page=True)
    for name in ("dashboard.png", "dashboard-en.png"):
        data = (ARTIFACTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_the_settlement_csv_downloads_and_matches_the_api(page, server):
    server.open_campaign()
    server.redeem("vip")
    day = "2025-02-12"
    login(page, "audit", USERS["audit"][0])  # an auditor sees and downloads it too
    page.wait_for_url("**/")
    page.select_option("#settle-date", day)
    api = server.settlement(day).json()
    total = f"{api['totals']['count']:,}"
    wait_text(page, '#settlement tr[data-platform="TOTAL"] td:nth-child(2)', total)
    with page.expect_download() as info:
        page.click("#settle-csv")
    download = info.value
    assert download.suggested_filename == f"settlement-{CID}-{day}.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    assert text == server.settlement(day, csv=True).text  # the API's CSV, byte for byte
    rows = {r["platform"]: r for r in csv.DictReader(io.StringIO(text))}
    for p in api["platforms"]:
        for k in ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen"):
            assert int(rows[p["platform"]][k]) == p[k]
    assert int(rows["TOTAL"]["net_subsidy_fen"]) == api["totals"]["net_subsidy_fen"] > 0
