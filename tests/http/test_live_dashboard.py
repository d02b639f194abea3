"""The dashboard's controls of a live campaign, over HTTP on every topology (gateways pass
the dashboard through to the sequencer): a logged-in operator pauses and resumes,
proposes an amendment that waits, and another operator's session approves it; an
auditor's session and a form without the page's token change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import CLIENTS, Api, Server
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-live-dashboard")
C = f"/v1/campaigns/{CID}"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp(f"board-{topology}")), topology=topology)
    try:
        yield s
    finally:
        s.close()


class Session:
    """A browser-like client logged in to the dashboard as ``user`` (its API secret)."""

    def __init__(self, base_url: str, user: str) -> None:
        self.c = httpx.Client(base_url=base_url, timeout=30.0)
        token = self._token(self.c.get("/login").text)
        r = self.c.post(
            "/login", data={"csrf": token, "username": user, "password": CLIENTS[user]["secret"]}
        )
        assert r.status_code == 303, r.text
        self.csrf = self._token(self.c.get("/").text)

    @staticmethod
    def _token(html: str) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m, html
        return m.group(1)

    def operate(self, op: str, csrf: str | None = None, **fields: Any) -> httpx.Response:
        data = {"csrf": self.csrf if csrf is None else csrf, "op": op, "campaign": CID, **fields}
        return self.c.post("/dashboard/api/operate", data={k: str(v) for k, v in data.items()})

    def listed(self, what: str) -> list[dict[str, Any]]:
        r = self.c.get("/dashboard/api/changes", params={"campaign": CID, "list": what})
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()[what]
        return out

    def close(self) -> None:
        self.c.close()


def test_an_operator_steers_the_campaign_from_the_dashboard(board: Server) -> None:
    api = Api(*board.urls)
    first = Session(board.urls[0], "ops")
    second = Session(board.urls[-1], "ops2")
    auditor = Session(board.urls[0], "audit")
    try:
        before = api.get(f"{C}/changes", as_="audit").json()["changes"]
        assert first.operate("pause", csrf="forged", reason="r").status_code == 403
        assert auditor.operate("pause", reason="r").json()["code"] == "forbidden"
        assert api.get(f"{C}/changes", as_="audit").json()["changes"] == before
        r = first.operate("pause", reason="fraud wave")
        assert r.status_code == 200 and r.json()["state"] == "paused", r.text
        assert api.status()["state"] == "paused"
        again = second.operate("pause", reason="again")
        assert (again.status_code, again.json()["code"]) == (409, "campaign_already_paused")
        r = first.operate("propose", kind="budget", delta_fen=1_700, days="remaining",
                          reason="top-up")  # fmt: skip
        assert r.status_code == 201, r.text
        am = r.json()
        assert second.listed("amendments")[-1]["status"] == "proposed"  # waits, seen by both
        own = first.operate("approve", amendment_id=am["id"], reason="mine")
        assert (own.status_code, own.json()["code"]) == (403, "four_eyes_required")
        ok = second.operate("approve", amendment_id=am["id"], reason="agreed")
        assert ok.status_code == 200 and ok.json()["approved_by"] == "ops2", ok.text
        blk = first.operate("block", kind="sku", platform="jd", sku="JD-9", reason="price")
        assert blk.status_code == 201, blk.text
        lift = second.operate("lift", block_id=blk.json()["id"], reason="fixed")
        assert lift.status_code == 200 and lift.json()["active"] is False
        assert second.operate("resume", reason="cleared").json()["state"] == "open"
        log = auditor.listed("changes")
        assert [(c["kind"], c["by"]) for c in log[len(before) :]] == [
            ("pause", "ops"), ("amendment.proposed", "ops"), ("amendment.applied", "ops2"),
            ("block.added", "ops"), ("block.lifted", "ops2"), ("resume", "ops2"),
        ]  # fmt: skip
        assert api.get(f"{C}/changes", as_="audit").json()["changes"] == log
        bad = first.operate("propose", kind="budget", delta_fen="1.5", days="remaining",
                            reason="r")  # fmt: skip
        assert bad.status_code == 422
    finally:
        for x in (first, second, auditor):
            x.close()
        api.close()
