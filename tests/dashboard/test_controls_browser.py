"""The dashboard's controls in a real browser (Debian's Chromium via Playwright): one
operator pauses with a confirmation and a reason, proposes a top-up that waits; a second
operator, in a second browser session, sees it pending and approves it; blocks are
lifted from the page; the change log shows who did what."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import login
from tests.http.harness import CLIENTS, Api, Server

pytestmark = pytest.mark.xdist_group("lijian-controls")
C = "/v1/campaigns/chengdu-2025-spring"


@pytest.fixture(scope="module")
def steer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp("controls")), topology="one")
    try:
        yield s
    finally:
        s.close()


def session(browser: Any, steer: Server, user: str) -> Any:
    ctx = browser.new_context(base_url=steer.url, viewport={"width": 1440, "height": 2400})
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    login(pg, user, CLIENTS[user]["secret"])
    pg.wait_for_url("**/")
    pg.locator("#op-form").wait_for()
    return pg


def submit(pg: Any, kind: str, reason: str, **fields: str) -> str:
    pg.select_option("#op-kind", kind)
    for sel, value in fields.items():
        pg.fill(f"#{sel}", value)
    pg.fill("#op-reason", reason)
    pg.click("#op-submit")
    pg.locator("#op-confirm").wait_for(state="visible")  # nothing sent before the confirm
    summary: str = pg.locator("#op-summary").inner_text()
    pg.click("#op-confirm")
    return summary


def result(pg: Any, startswith: str) -> str:
    pg.wait_for_function(
        "(p) => document.getElementById('op-result').textContent.startsWith(p)", arg=startswith
    )
    text: str = pg.locator("#op-result").inner_text()
    return text


def test_two_operators_steer_a_campaign_with_four_eyes(browser: Any, steer: Server) -> None:
    api = Api(steer.url)
    first = session(browser, steer, "ops")
    second = session(browser, steer, "ops2")
    try:
        summary = submit(first, "pause", "fraud wave")
        assert "op=pause" in summary and "reason=fraud wave" in summary
        assert result(first, "OK 200").endswith("paused")
        assert api.status()["state"] == "paused"
        submit(first, "resume", "cleared")
        result(first, "OK 200 ch_00000002")
        submit(first, "budget", "top-up", **{"op-delta": "1700", "op-days": "remaining"})
        result(first, "OK 201 am_000001")
        am = api.get(f"{C}/amendments", as_="audit").json()["amendments"][-1]
        assert (am["id"], am["status"]) == ("am_000001", "proposed")
        # The proposer cannot approve its own amendment from the page either.
        first.locator("#pending tr[data-id='am_000001'] button.approve").click()
        assert "four_eyes_required" in result(first, "refused 403")
        # The second operator's page lists it pending; its approval applies it.
        row = second.locator("#pending tr[data-id='am_000001']")
        row.wait_for()
        second.fill("#op-reason", "agreed")
        row.locator("button.approve").click()
        result(second, "OK 200 am_000001 applied")
        assert (
            api.get(f"{C}/amendments", as_="audit").json()["amendments"][-1]["approved_by"]
            == "ops2"
        )
        submit(second, "person", "borrowed ids", **{"op-person": "p-77"})
        result(second, "OK 201 bl_000001")
        lift = first.locator("#blocks tr[data-id='bl_000001'] button.lift")
        lift.wait_for()
        first.fill("#op-reason", "cleared")
        lift.click()
        result(first, "OK 200 bl_000001")
        blocks = api.get(f"{C}/blocks", as_="audit").json()["blocks"]
        assert [(b["id"], b["active"]) for b in blocks] == [("bl_000001", False)]
        kinds = [
            (c["kind"], c["by"]) for c in api.get(f"{C}/changes", as_="audit").json()["changes"]
        ]
        assert kinds == [
            ("pause", "ops"), ("resume", "ops"), ("amendment.proposed", "ops"),
            ("amendment.applied", "ops2"), ("block.added", "ops2"), ("block.lifted", "ops"),
        ]  # fmt: skip
        first.wait_for_function("() => document.querySelectorAll('#changes tbody tr').length === 6")
        # A change cancelled at its confirmation is never sent.
        first.select_option("#op-kind", "pause")
        first.fill("#op-reason", "not really")
        first.click("#op-submit")
        first.click("#op-cancel")
        assert api.status()["state"] == "open"
        assert first.errors == [] and second.errors == []
    finally:
        first.context.close()
        second.context.close()
        api.close()
