"""The dashboard for someone who has never seen it: the login page says which
credentials to use, the page is usable at 420 px, and every time names its zone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import USERS, Server, login

pytestmark = pytest.mark.xdist_group("lijian-serve")
NARROW_PX = 420


@pytest.fixture
def narrow(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server.base_url, viewport={"width": NARROW_PX, "height": 900}
    )
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def overflow_px(pg: Any) -> int:
    return int(pg.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def test_login_page_says_what_to_use_and_fits_420_px(narrow: Any) -> None:
    narrow.goto("/login")
    hint = narrow.locator("#hint")
    hint.wait_for(state="visible")
    text = hint.inner_text()
    assert "operator" in text and "auditor" in text and "key_id" in text and "secret" in text
    assert "make serve" in text
    narrow.click("#lang")
    narrow.locator("#hint", has_text="User name: the key_id of an operator or auditor").wait_for()
    assert overflow_px(narrow) == 0


def test_dashboard_at_420_px_keeps_the_campaign_selector_and_names_the_zone(
    narrow: Any, server: Server
) -> None:
    server.open_campaign()
    server.redeem()
    login(narrow, "ops", USERS["ops"][0])
    narrow.wait_for_url("**/")
    narrow.locator(".live.on").wait_for()
    assert overflow_px(narrow) == 0
    box = narrow.locator("#campaign").bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW_PX
    # The selector shows the campaign name in full or cut with an ellipsis, never clipped
    # by the viewport; its option is the campaign.
    assert narrow.locator("#campaign option").first.get_attribute("value") == "chengdu-2025-spring"
    clock = narrow.locator("#clock")
    narrow.wait_for_function("document.getElementById('clock').textContent.length > 0")
    assert clock.inner_text().endswith(" UTC+08:00")
    narrow.locator("#audit-badge").wait_for(timeout=40_000)
    line = narrow.locator("#audit p.muted").inner_text()
    assert " UTC+08:00 · " in line, line
