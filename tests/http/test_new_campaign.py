"""A new campaign over the API (docs/API.md, "Running a live campaign"), on every topology.

``POST /v1/campaigns`` with the settings file as the body proposes it; another operator
key approves it; from then on it is served like a campaign loaded with ``--campaign``
(releases, redemptions, status, catalogue, reports) by every process, and after a kill
and a restart whose command line does not name it. Each step goes to the next process
in turn (two gateways on ``pg-2gw``), so the proposal, the approval and the redemptions
are answered by different processes. One server per topology for this module.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lijian.core.settings import SettingsError, parse_settings
from lijian.evidence.bundle import KEY_ENV
from tests.http.harness import (
    LIJIAN,
    SHARD_B_CID,
    Api,
    Server,
    campaign_doc,
    catalog_ndjson,
    dump_toml,
    metric,
    order,
)
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-new-campaign")

NEW = "chengdu-2025-wave-2"
LATER = "chengdu-2025-wave-4"  # proposed before a kill, approved after it
TODAY = "2025-02-12"
TOML = {"content-type": "application/toml"}


def wave(cid: str = NEW, **campaign: Any) -> str:
    return dump_toml(campaign_doc(campaign={"id": cid, "name": f"{cid} (API)", **campaign}))


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    root = Path(tmp_path_factory.mktemp(f"new-campaign-{topology}"))
    keys = subprocess.run([str(LIJIAN), "keys", "new", "--out", str(root / "keys")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert keys.returncode == 0, keys.stderr
    mp = pytest.MonkeyPatch()
    # The servers inherit it, also when a test here starts them again.
    mp.setenv(KEY_ENV, str(root / "keys" / "evidence.key"))
    try:
        s = Server(root / "server", topology=topology)
        try:
            yield s
        finally:
            s.close()
    finally:
        mp.undo()


@pytest.fixture
def api(launched: Server) -> Iterator[Api]:
    a = Api(*launched.urls)
    try:
        yield a
    finally:
        a.close()


def propose(api: Api, text: str, as_: str = "ops", **kw: Any) -> httpx.Response:
    return api.request("POST", "/v1/campaigns", content=text.encode(), headers=TOML, as_=as_, **kw)


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code, r.text
    return body


def test_proposed_on_one_process_approved_on_another_then_served_by_all(
    launched: Server, api: Api
) -> None:
    r = propose(api, wave(), params={"reason": "the second wave"})
    assert r.status_code == 201, r.text
    am = r.json()
    assert am["id"].startswith("am_")
    assert (am["status"], am["kind"], am["campaign_id"], am["proposed_by"], am["reason"]) == (
        "proposed", "campaign", NEW, "ops", "the second wave",
    )  # fmt: skip
    assert am["settings_toml"] == wave()  # what the second operator approves
    # Not served before its approval, by any process.
    for _ in range(2):
        problem(api.get(f"/v1/campaigns/{NEW}/status"), 404, "campaign_not_found")
        assert api.codes(order(campaign_id=NEW)) == ["campaign_not_found"]
    pending = api.get(f"/v1/campaigns/{NEW}/amendments", as_="audit").json()["amendments"]
    assert [(a["id"], a["status"]) for a in pending] == [(am["id"], "proposed")]
    at = f"/v1/campaigns/{NEW}/amendments/{am['id']}"
    problem(api.post(f"{at}/approve", {"reason": "mine"}, as_="ops"), 403, "four_eyes_required")
    ok = api.post(f"{at}/approve", {"reason": "budget confirmed"}, as_="ops2")
    assert ok.status_code == 200, ok.text
    applied = ok.json()
    assert (applied["status"], applied["approved_by"], applied["approval_reason"]) == (
        "applied", "ops2", "budget confirmed",
    )  # fmt: skip
    assert applied["applied_at"].startswith(TODAY)
    problem(api.post(f"{at}/approve", {"reason": "twice"}, as_="ops"), 409, "amendment_not_pending")
    # Served at once by every process: status, settings, catalogue, redemptions.
    seed_status = api.status(CID)
    for _ in range(2):
        st = api.status(NEW)
        assert (st["campaign_id"], st["state"]) == (NEW, "open")
        assert st["budget_fen"] == seed_status["budget_fen"]
        assert st["today"]["released_fen"] == seed_status["today"]["released_fen"]
        got = api.get(f"/v1/campaigns/{NEW}", as_="audit")
        assert got.status_code == 200 and got.json()["campaign"]["id"] == NEW
    listed = api.get("/v1/campaigns", as_="audit").json()["campaigns"]
    # (pg-shards: shard b's campaign after shard a's, where the new one was made)
    assert [c["campaign"]["id"] for c in listed if c["campaign"]["id"] != SHARD_B_CID] == [CID, NEW]
    assert api.put_catalog(catalog_ndjson(), cid=NEW).status_code == 200
    rids = [api.granted(order(campaign_id=NEW))["id"] for _ in range(4)]
    assert api.status(NEW)["today"]["remaining_fen"] == (
        seed_status["today"]["released_fen"] - 4 * 3_720
    )
    for rid in rids[:2]:
        assert api.post(f"/v1/redemptions/{rid}/capture").status_code == 200
    for _ in range(2):  # settled like any campaign, whichever process answers
        rep = api.get(f"/v1/campaigns/{NEW}/settlement?date={TODAY}", as_="audit").json()
        assert (rep["totals"]["count"], rep["totals"]["discount_fen"]) == (2, 2 * 3_720)
    # (pg-shards: a shard's series are labelled with its node, the first shard's for a
    # campaign made over the API)
    shard = ',shard="a"' if launched.topology == "pg-shards" else ""
    for _ in range(2):  # its own series on /metrics, whichever process answers
        text = api.get("/metrics", signed=False).text
        assert metric(text, f'lijian_grants_total{{campaign="{NEW}"{shard}}}') == 4
        left = metric(text, f'lijian_tranche_remaining_fen{{campaign="{NEW}"{shard}}}')
        assert left == seed_status["today"]["released_fen"] - 4 * 3_720
    log = api.get(f"/v1/campaigns/{NEW}/changes", as_="audit").json()["changes"]
    assert [(c["kind"], c["by"], c["amendment_id"]) for c in log] == [
        ("amendment.proposed", "ops", am["id"]),
        ("amendment.applied", "ops2", am["id"]),
    ]
    events = api.get("/v1/admin/events?limit=500", as_="audit").json()["events"]
    mine = [
        (e["type"], e["data"]["amendment"]["id"])
        for e in events
        if e["campaign_id"] == NEW and e["type"].startswith("amendment.")
    ]
    assert mine == [("amendment.proposed", am["id"]), ("amendment.applied", am["id"])]
    assert api.get(f"/v1/campaigns/{NEW}/audit", as_="audit").json()["ok"] is True


def test_a_settings_file_with_problems_is_422_with_every_problem(api: Api) -> None:
    doc = campaign_doc(campaign={"id": "broken", "budget_fen": -5, "daily_open": "25:00"},
                       limits={"hold_ttl_s": 0}, extra={"x": 1})  # fmt: skip
    text = dump_toml(doc)
    try:
        parse_settings(doc)
    except SettingsError as exc:
        expected = [{"field": p.path, "message": p.message} for p in exc.problems]
    assert len(expected) >= 4
    body = problem(propose(api, text), 422, "invalid_request")
    assert body["errors"] == expected  # the words of `lijian campaign check`
    bad_toml = problem(propose(api, "[campaign\nid = 1"), 422, "invalid_request")
    assert [e["field"] for e in bad_toml["errors"]] == ["body"]
    assert bad_toml["errors"][0]["message"].startswith("not valid TOML")
    wrong_type = api.request("POST", "/v1/campaigns", content=wave("x").encode(), as_="ops",
                             headers={"content-type": "application/json"})  # fmt: skip
    problem(wrong_type, 415, "unsupported_media_type")
    huge = wave("huge") + "# " + "x" * 70_000 + "\n"
    assert propose(api, huge).status_code == 413
    problem(propose(api, wave("y"), params={"reason": "\x07"}), 422, "invalid_request")
    listed = api.get("/v1/campaigns", as_="audit").json()["campaigns"]
    assert {c["campaign"]["id"] for c in listed} <= {CID, NEW, SHARD_B_CID}  # none proposed


def test_an_id_that_exists_or_is_proposed_is_409(api: Api) -> None:
    problem(propose(api, wave(CID)), 409, "campaign_exists")
    first = propose(api, wave("chengdu-2025-wave-3"))
    assert first.status_code == 201, first.text
    problem(propose(api, wave("chengdu-2025-wave-3")), 409, "campaign_exists")
    am = first.json()["id"]
    at = f"/v1/campaigns/chengdu-2025-wave-3/amendments/{am}"
    rej = api.post(f"{at}/reject", {"reason": "not this season"}, as_="ops2")
    assert rej.status_code == 200 and rej.json()["status"] == "rejected", rej.text
    problem(api.post(f"{at}/approve", {"reason": "late"}, as_="ops2"), 409, "amendment_not_pending")
    problem(api.get("/v1/campaigns/chengdu-2025-wave-3/status"), 404, "campaign_not_found")
    problem(api.post(f"/v1/campaigns/{CID}/amendments/am_999999/approve", {"reason": "r"},
                     as_="ops2"), 404, "amendment_not_found")  # fmt: skip


@pytest.mark.parametrize("who", ["jd", "unionpay", "audit"])
def test_only_an_operator_may_propose_a_campaign(api: Api, who: str) -> None:
    problem(propose(api, wave("chengdu-2025-wave-9"), as_=who), 403, "forbidden")


def test_after_a_kill_it_is_served_without_its_file_and_the_audit_is_clean(
    launched: Server, api: Api
) -> None:
    """SIGKILL of every process (the ledger's too), then the same command lines, which
    name only the seed campaign: the new one comes back from the ledger."""
    status = api.status(NEW)
    changes = api.get(f"/v1/campaigns/{NEW}/changes", as_="audit").json()
    waiting = propose(api, wave(LATER), params={"reason": "over the kill"})
    assert waiting.status_code == 201, waiting.text
    launched.api.close()
    launched.stop(signal.SIGKILL)
    assert all("chengdu-2025-wave-2" not in " ".join(c) for c in launched.cmds)
    out = subprocess.run([str(LIJIAN), "audit", "--db", str(launched.db)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    launched.start()
    launched.api = Api(*launched.urls)
    for _ in range(2):
        assert api.status(NEW) == {**status, "now": api.status(NEW)["now"]}
        assert api.get(f"/v1/campaigns/{NEW}/changes", as_="audit").json() == changes
    assert api.granted(order(campaign_id=NEW))["status"] == "held"
    # A proposal made before the kill still waits for its second operator.
    listed = api.get(f"/v1/campaigns/{LATER}/amendments", as_="audit").json()["amendments"]
    assert [(a["id"], a["status"]) for a in listed] == [(waiting.json()["id"], "proposed")]
    problem(api.get(f"/v1/campaigns/{LATER}/status"), 404, "campaign_not_found")
    at = f"/v1/campaigns/{LATER}/amendments/{waiting.json()['id']}/approve"
    assert api.post(at, {"reason": "after the restart"}, as_="ops2").status_code == 200
    assert api.status(LATER)["campaign_id"] == LATER
    assert api.get(f"/v1/campaigns/{NEW}/audit", as_="audit").json()["ok"] is True


def test_the_day_s_evidence_lists_its_creation(launched: Server, api: Api, tmp_path: Path) -> None:
    api.set_clock("2025-02-13T10:00:00+08:00")
    r = api.get(f"/v1/campaigns/{NEW}/evidence?date={TODAY}", as_="audit")
    assert r.status_code == 200, r.text
    rows = r.json()["changes"]
    assert [(c["kind"], c["amendment"]["kind"]) for c in rows] == [
        ("amendment.proposed", "campaign"), ("amendment.applied", "campaign"),
    ]  # fmt: skip
    assert rows[0]["amendment"]["settings_toml"] == wave()
    path = tmp_path / "bundle.json"
    path.write_bytes(r.content)
    pub = Path(str(launched.workdir).removesuffix("/server")) / "keys" / "evidence.pub"
    ok = subprocess.run([str(LIJIAN), "verify", str(path), "--pubkey", str(pub)],
                        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_campaign_file_of_its_id_with_other_settings_is_refused_at_start(
    launched: Server, tmp_path: Path
) -> None:
    """The ledger's settings are the ones money was granted under: a file that says
    otherwise stops the start with one line (the server is not started)."""
    other = tmp_path / "other.toml"
    other.write_text(wave(budget_fen=1_700_000), encoding="utf-8")
    launched.api.close()
    launched.stop()
    first = launched.cmds[0]
    cmd = [*first[:2], "--campaign", str(other), *first[2:]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    said = out.stdout + out.stderr
    assert out.returncode != 0, said
    assert f"campaign '{NEW}' was created over the API" in said, said
    assert "Traceback" not in said
    launched.start()  # the files it was started with: still served
    launched.api = Api(*launched.urls)
    assert launched.api.status(NEW)["campaign_id"] == NEW
