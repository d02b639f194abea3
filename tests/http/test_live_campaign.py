"""Running a live campaign over HTTP (docs/API.md), on every topology.

Each step goes through a client that alternates between the servers' processes (two
gateways on ``pg-2gw``; separate connections, so separate workers, on ``--workers 2``),
so a pause, an amendment or a block made through one is seen by the next request
wherever it is answered. One server per topology for this module; each test leaves the
campaign open and unblocked for the next.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.harness import LIJIAN, Api, Server, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-live-campaign")

C = f"/v1/campaigns/{CID}"
TODAY = "2025-02-12"
DAYS = 17  # the seed campaign: 2025-02-12 … 2025-02-28
DISCOUNT_FEN = 3_720
RUSH = 64


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp(f"live-{topology}")), topology=topology)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def api(live: Server) -> Iterator[Api]:
    a = Api(*live.urls)
    try:
        yield a
    finally:
        a.close()


def codes(r: httpx.Response) -> list[str]:
    return [x["code"] for x in r.json()["reasons"]]


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code, r.text


def changes(api: Api) -> list[dict[str, Any]]:
    r = api.get(f"{C}/changes", as_="audit")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["changes"]
    return out


def today(api: Api) -> dict[str, Any]:
    out: dict[str, Any] = api.status()["today"]
    return out


def test_a_pause_is_seen_at_once_everywhere_and_money_held_settles(api: Api) -> None:
    held = api.granted(order())
    r = api.post(f"{C}/pause", {"reason": "fraud wave on JD"}, as_="ops")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"campaign_id": CID, "state": "paused", "change_id": body["change_id"]}
    assert body["change_id"].startswith("ch_")
    assert api.status()["state"] == "paused"
    assert api.get(f"/public/campaigns/{CID}", signed=False).json()["state"] == "paused"
    assert api.codes(order()) == ["campaign_paused"]
    q = api.post("/v1/quotes", order(), as_="jd")
    assert q.json()["eligible"] is False and codes(q) == ["campaign_paused"]
    problem(api.post(f"{C}/pause", {"reason": "again"}, as_="ops2"), 409, "campaign_already_paused")
    cap = api.post(f"/v1/redemptions/{held['id']}/capture")
    assert cap.status_code == 200 and cap.json()["status"] == "captured"
    r = api.post(f"{C}/resume", {"reason": "cleared"}, as_="ops2")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "open" and r.json()["campaign_id"] == CID
    problem(api.post(f"{C}/resume", {"reason": "again"}, as_="ops"), 409, "campaign_not_paused")
    assert api.status()["state"] == "open"
    assert api.redeem(order()).status_code == 201
    log = changes(api)[-2:]
    assert [(c["kind"], c["by"], c["reason"]) for c in log] == [
        ("pause", "ops", "fraud wave on JD"),
        ("resume", "ops2", "cleared"),
    ]
    assert log[0]["id"] == body["change_id"]


def test_a_budget_amendment_needs_a_second_operator(api: Api) -> None:
    before = today(api)
    budget = api.status()["budget_fen"]
    r = api.post(
        f"{C}/amendments",
        {"kind": "budget", "delta_fen": DAYS * 100, "days": "remaining", "reason": "top-up"},
        as_="ops",
    )
    assert r.status_code == 201, r.text
    am = r.json()
    assert am["id"].startswith("am_") and am["status"] == "proposed"
    assert (am["kind"], am["proposed_by"], am["delta_fen"], am["days"], am["reason"]) == (
        "budget",
        "ops",
        DAYS * 100,
        "remaining",
        "top-up",
    )
    assert today(api)["released_fen"] == before["released_fen"]  # waits for the approval
    listed = api.get(f"{C}/amendments", as_="audit").json()["amendments"]
    assert listed[-1]["id"] == am["id"] and listed[-1]["status"] == "proposed"
    own = api.post(f"{C}/amendments/{am['id']}/approve", {"reason": "mine"}, as_="ops")
    problem(own, 403, "four_eyes_required")
    ok = api.post(f"{C}/amendments/{am['id']}/approve", {"reason": "agreed"}, as_="ops2")
    assert ok.status_code == 200, ok.text
    applied = ok.json()
    assert (applied["status"], applied["approved_by"], applied["id"]) == (
        "applied",
        "ops2",
        am["id"],
    )
    assert applied["applied_at"].startswith(TODAY)
    now = today(api)
    assert now["released_fen"] == before["released_fen"] + 100
    assert now["remaining_fen"] == before["remaining_fen"] + 100
    assert api.status()["budget_fen"] == budget + DAYS * 100
    again = api.post(f"{C}/amendments/{am['id']}/approve", {"reason": "twice"}, as_="ops2")
    problem(again, 409, "amendment_not_pending")
    problem(
        api.post(f"{C}/amendments/{am['id']}/reject", {"reason": "late"}, as_="ops2"),
        409,
        "amendment_not_pending",
    )
    r = api.post(
        f"{C}/amendments", {"kind": "end", "last_date": "2025-02-27", "reason": "x"}, as_="ops2"
    )
    assert r.status_code == 201, r.text
    rej = api.post(f"{C}/amendments/{r.json()['id']}/reject", {"reason": "no"}, as_="ops")
    assert rej.status_code == 200 and rej.json()["status"] == "rejected"
    assert api.status()["state"] == "open"
    kinds = [c["kind"] for c in changes(api)[-4:]]
    assert kinds == [
        "amendment.proposed",
        "amendment.applied",
        "amendment.proposed",
        "amendment.rejected",
    ]


def test_a_cut_below_granted_plus_held_is_refused_and_nothing_changes(api: Api) -> None:
    api.granted(order())  # something held today
    t = today(api)
    cut = {
        "kind": "budget",
        "delta_fen": -(t["remaining_fen"] + 1),
        "days": [TODAY],
        "reason": "cut",
    }
    am = api.post(f"{C}/amendments", cut, as_="ops").json()
    r = api.post(f"{C}/amendments/{am['id']}/approve", {"reason": "ok"}, as_="ops2")
    problem(r, 409, "amendment_below_committed")
    assert today(api) == t
    assert api.get(f"{C}/amendments", as_="audit").json()["amendments"][-1]["status"] == "proposed"
    assert (
        api.post(f"{C}/amendments/{am['id']}/reject", {"reason": "x"}, as_="ops").status_code == 200
    )


def test_a_cut_racing_a_rush_never_goes_below_granted_plus_held(live: Server, api: Api) -> None:
    t = today(api)
    leave_fen = RUSH // 2 * DISCOUNT_FEN  # room for half the rush after the cut
    cut = {
        "kind": "budget",
        "delta_fen": -(t["remaining_fen"] - leave_fen),
        "days": [TODAY],
        "reason": "money short",
    }
    am = api.post(f"{C}/amendments", cut, as_="ops").json()
    barrier = threading.Barrier(RUSH + 1)

    def redeem(i: int) -> int:
        a = Api(*live.urls)
        try:
            barrier.wait(30)
            return a.redeem(order()).status_code
        finally:
            a.close()

    def approve() -> httpx.Response:
        a = Api(*live.urls)
        try:
            barrier.wait(30)
            return a.post(f"{C}/amendments/{am['id']}/approve", {"reason": "go"}, as_="ops2")
        finally:
            a.close()

    with ThreadPoolExecutor(RUSH + 1) as pool:
        futs = [pool.submit(redeem, i) for i in range(RUSH)]
        appr = pool.submit(approve)
        statuses = [f.result() for f in futs]
        r = appr.result()
    granted = statuses.count(201)
    assert statuses.count(200) + granted == RUSH
    after = today(api)
    if r.status_code == 200:  # applied before some grants, after others: never below
        assert after["released_fen"] == t["released_fen"] - cut["delta_fen"] * -1
        assert after["remaining_fen"] >= 0
        assert after["held_fen"] + after["granted_fen"] <= after["released_fen"]
        assert after["remaining_fen"] == leave_fen - granted * DISCOUNT_FEN
    else:  # refused when the grants before it left less than the cut: nothing changed
        problem(r, 409, "amendment_below_committed")
        assert after["released_fen"] == t["released_fen"]
    audit = api.get(f"{C}/audit", as_="audit").json()
    assert audit["ok"] is True, audit
    # Top the day up again for the tests after this one.
    up = {"kind": "budget", "delta_fen": 10_000_000, "days": [TODAY], "reason": "refill"}
    am2 = api.post(f"{C}/amendments", up, as_="ops").json()
    assert (
        api.post(f"{C}/amendments/{am2['id']}/approve", {"reason": "ok"}, as_="ops2").status_code
        == 200
    )


def test_blocks_of_a_person_and_a_sku_apply_to_the_next_decision_everywhere(api: Api) -> None:
    person = "p-flagged-by-audit"
    held = api.granted(order(person=person))
    r = api.post(
        f"{C}/blocks", {"kind": "person", "person_id": person, "reason": "borrowed id"}, as_="ops"
    )
    assert r.status_code == 201, r.text
    bl = r.json()
    assert bl["id"].startswith("bl_") and bl["active"] is True and bl["person_id"] == person
    assert api.codes(order(person=person)) == ["person_blocked"]
    assert api.post(f"/v1/redemptions/{held['id']}/capture").status_code == 200
    r = api.post(
        f"{C}/blocks",
        {
            "kind": "sku",
            "platform": "jd",
            "sku": "JD-7",
            "reason": "price raised before the discount",
        },
        as_="ops2",
    )
    assert r.status_code == 201, r.text
    sku = r.json()
    assert api.codes(order(sku="JD-7")) == ["sku_blocked"]
    assert api.codes(order(person=person, sku="JD-7")) == ["person_blocked", "sku_blocked"]
    assert api.redeem(order(sku="JD-8")).status_code == 201
    listed = api.get(f"{C}/blocks", as_="audit").json()["blocks"]
    assert [(b["id"], b["active"]) for b in listed[-2:]] == [(bl["id"], True), (sku["id"], True)]
    for b in (bl, sku):
        r = api.post(f"{C}/blocks/{b['id']}/lift", {"reason": "cleared"}, as_="ops")
        assert r.status_code == 200 and r.json()["active"] is False, r.text
        problem(
            api.post(f"{C}/blocks/{b['id']}/lift", {"reason": "again"}, as_="ops"),
            409,
            "block_not_active",
        )
    assert api.redeem(order(person=person, sku="JD-7")).status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/pause", {}, 422, "invalid_request"),
        ("/pause", {"reason": ""}, 422, "invalid_request"),
        ("/pause", {"reason": "x" * 501}, 422, "invalid_request"),
        ("/pause", {"reason": "a\x07b"}, 422, "invalid_request"),
        ("/pause", {"reason": "ok", "extra": 1}, 422, "invalid_request"),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 0, "days": "remaining", "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 1.5, "days": "remaining", "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 10**15 + 1, "days": "remaining", "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 5, "days": ["2025-02-14", "2025-02-13"], "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 5, "days": ["2025-02-13", "2025-02-13"], "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "budget", "delta_fen": 5, "days": ["2025-03-01"], "reason": "r"},
            422,
            "invalid_request",
        ),
        (
            "/amendments",
            {"kind": "end", "last_date": "2025-03-02", "reason": "r"},
            422,
            "invalid_request",
        ),
        ("/amendments/am_999999/approve", {"reason": "r"}, 404, "amendment_not_found"),
        ("/blocks/bl_999999/lift", {"reason": "r"}, 404, "block_not_found"),
        ("/blocks", {"kind": "person", "reason": "r"}, 422, "invalid_request"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    api: Api, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    before = changes(api)
    problem(api.post(C + path, body, as_="ops"), status, code)
    assert changes(api) == before
    assert api.status()["state"] == "open"


@pytest.mark.parametrize("who", ["unionpay", "jd", "audit"])
def test_only_an_operator_may_change_a_campaign(api: Api, who: str) -> None:
    before = changes(api)
    problem(api.post(f"{C}/pause", {"reason": "r"}, as_=who), 403, "forbidden")
    problem(
        api.post(f"{C}/blocks", {"kind": "person", "person_id": "p", "reason": "r"}, as_=who),
        403,
        "forbidden",
    )
    assert changes(api) == before


def test_an_unknown_campaign_is_404(api: Api) -> None:
    r = api.post("/v1/campaigns/nope/pause", {"reason": "r"}, as_="ops")
    problem(r, 404, "campaign_not_found")
    problem(api.get("/v1/campaigns/nope/changes", as_="audit"), 404, "campaign_not_found")


def test_after_a_restart_every_change_is_replayed_and_the_audit_is_clean(
    live: Server, api: Api
) -> None:
    r = api.post(
        f"{C}/amendments",
        {
            "kind": "budget",
            "delta_fen": 1_000,
            "days": [TODAY],
            "reason": "pending over the restart",
        },
        as_="ops",
    )
    pending = r.json()["id"]
    api.post(f"{C}/blocks", {"kind": "person", "person_id": "p-restart", "reason": "r"}, as_="ops")
    assert api.post(f"{C}/pause", {"reason": "before the restart"}, as_="ops").status_code == 200
    lists = {
        w: api.get(f"{C}/{w}", as_="audit").json() for w in ("changes", "amendments", "blocks")
    }
    status = api.status()
    live.api.close()
    live.stop()
    out = subprocess.run(
        [str(LIJIAN), "audit", "--db", str(live.db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    live.start()
    live.api = Api(*live.urls)
    again = Api(*live.urls)
    try:
        for w, body in lists.items():
            assert again.get(f"{C}/{w}", as_="audit").json() == body
        assert again.status() == {**status, "now": again.status()["now"]}
        assert again.codes(order(person="p-restart")) == ["campaign_paused", "person_blocked"]
        ok = again.post(f"{C}/amendments/{pending}/approve", {"reason": "after"}, as_="ops2")
        assert ok.status_code == 200 and ok.json()["status"] == "applied"
        assert again.post(f"{C}/resume", {"reason": "after"}, as_="ops2").status_code == 200
        assert again.get(f"{C}/audit", as_="audit").json()["ok"] is True
    finally:
        again.close()


def test_a_kill_during_a_rush_keeps_a_pending_amendment_pending(live: Server, api: Api) -> None:
    """kill -9 while redemptions are in flight and an amendment waits for its approval:
    after the restart every acknowledged grant and every change is there, the amendment
    still waits, and the audit is clean."""
    top = {"kind": "budget", "delta_fen": 2_000, "days": [TODAY], "reason": "before the kill"}
    pending = api.post(f"{C}/amendments", top, as_="ops").json()["id"]
    lists = {w: api.get(f"{C}/{w}", as_="audit").json() for w in ("changes", "amendments")}
    acked: list[str] = []
    lock = threading.Lock()

    def rush(i: int) -> None:
        a = Api(*live.urls)
        try:
            for _ in range(RUSH):
                try:
                    r = a.redeem(order())
                except httpx.TransportError:
                    return  # the server was killed under this request
                if r.status_code == 201:
                    with lock:
                        acked.append(r.json()["id"])
        finally:
            a.close()

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(rush, i) for i in range(8)]
        while True:  # kill once some grants were acknowledged, with more in flight
            with lock:
                if len(acked) >= 16:
                    break
            assert not all(f.done() for f in futs), "the rush ended before the kill"
            time.sleep(0.01)
        live.api.close()
        live.stop(signal.SIGKILL)
        for f in futs:
            f.result()
    live.start()
    live.api = Api(*live.urls)
    again = Api(*live.urls)
    try:
        for w, body in lists.items():
            assert again.get(f"{C}/{w}", as_="audit").json() == body
        for rid in acked:
            r = again.get(f"/v1/redemptions/{rid}")
            assert r.status_code == 200 and r.json()["status"] == "held", r.text
        assert again.get(f"{C}/audit", as_="audit").json()["ok"] is True
        ok = again.post(f"{C}/amendments/{pending}/approve", {"reason": "after"}, as_="ops2")
        assert ok.status_code == 200 and ok.json()["status"] == "applied", ok.text
    finally:
        again.close()


EVENT_OF = {
    "pause": "campaign.paused",
    "resume": "campaign.resumed",
    "amendment.proposed": "amendment.proposed",
    "amendment.applied": "amendment.applied",
    "amendment.rejected": "amendment.rejected",
    "block.added": "block.added",
    "block.lifted": "block.lifted",
}


def test_every_change_is_an_event_recorded_with_it(api: Api) -> None:
    """One event per change, in the change log's order, with the change in data."""
    events: list[dict[str, Any]] = []
    after = None
    for _ in range(100):  # pages of 500, bounded
        params = {"limit": "500", **({"after": after} if after else {})}
        page = api.get("/v1/admin/events", params=params, as_="audit").json()
        events += page["events"]
        if not page["events"]:
            break
        after = page["events"][-1]["id"]
    mine = [ev for ev in events if ev["type"] in EVENT_OF.values()]
    log = changes(api)
    assert [ev["type"] for ev in mine] == [EVENT_OF[c["kind"]] for c in log]
    assert [ev["data"]["id"] for ev in mine] == [c["id"] for c in log]
    assert all(ev["campaign_id"] == CID for ev in mine)
    applied = next(ev for ev in mine if ev["type"] == "amendment.applied")
    assert applied["data"]["amendment"]["status"] == "applied"
    assert applied["data"]["by"] == applied["data"]["amendment"]["approved_by"]
