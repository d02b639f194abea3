"""The dashboard's risk review queue in a real browser: a velocity flag is listed with
its persons and figures; an operator dismisses one flag and blocks the person of another
with the form's reason; both leave the queue, and the block declines the next order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.test_controls_browser import result, session
from tests.http.harness import Api, Server, campaign_doc, order

pytestmark = pytest.mark.xdist_group("lijian-risk-review")
C = "/v1/campaigns/chengdu-2025-spring"


@pytest.fixture(scope="module")
def steer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    doc = campaign_doc(risk={"velocity_redemptions_max": 1, "velocity_window_min": 60})
    s = Server(Path(tmp_path_factory.mktemp("risk-review")), campaigns=[doc], topology="one")
    try:
        yield s
    finally:
        s.close()


def two_grants(api: Api) -> str:
    person = f"p-{uuid.uuid4().hex[:12]}"
    for _ in range(2):
        api.granted(order(person=person))
    return person


def test_an_operator_dismisses_and_blocks_from_the_queue(browser: Any, steer: Server) -> None:
    api = Api(steer.url)
    calm, scalper = two_grants(api), two_grants(api)
    pg = session(browser, steer, "ops")
    try:
        queue = api.get(f"{C}/risk/queue", as_="audit").json()
        ids = {f["person_ids"][0]: f["id"] for f in queue["flags"]}
        assert queue["open_count"] == 2 and set(ids) == {calm, scalper}
        row = pg.locator(f"#risk-queue tr[data-id='{ids[calm]}']")
        row.wait_for()
        assert "velocity" in row.inner_text() and "redemptions=2" in row.inner_text()
        pg.fill("#op-reason", "a family's orders")
        row.locator("button.dismiss").click()
        result(pg, f"OK 200 {ids[calm]} dismiss")
        row = pg.locator(f"#risk-queue tr[data-id='{ids[scalper]}']")
        pg.fill("#op-reason", "scalper")
        row.locator("button.block-person").click()
        result(pg, f"OK 200 {ids[scalper]} block_person")
        pg.wait_for_function("() => document.querySelectorAll('#risk-queue tbody tr').length === 0")
        after = api.get(f"{C}/risk/queue", as_="audit").json()
        assert after["open_count"] == 0
        assert [
            (r["flag_id"], r["action"], r["reason"], r["operator"]) for r in after["reviews"]
        ] == [
            (ids[scalper], "block_person", "scalper", "ops"),
            (ids[calm], "dismiss", "a family's orders", "ops"),
        ]
        d = api.redeem(order(person=scalper))
        assert [x["code"] for x in d.json()["reasons"]] == ["person_blocked"]
        assert pg.errors == []
    finally:
        pg.context.close()
        api.close()
