"""The review queue over HTTP, on every topology: a detector's flag (velocity here) is
listed in ``GET …/risk/queue``; an operator dismisses it, or blocks its person or a SKU
of it, with a reason (``POST …/risk/{flag_id}/review``); the block declines the next
order; a flag is reviewed once; the queue and reviews survive a kill -9."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.harness import Api, Server, campaign_doc, order

pytestmark = pytest.mark.xdist_group("http-risk-review")

FAST = "fast-2025"  # velocity: more than 1 redemption by one person within 60 minutes
RING = "ring-2025"  # shared_identity_cluster: more than 1 person on one address or device
Q = f"/v1/campaigns/{FAST}/risk"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    doc = campaign_doc(
        campaign={"id": FAST}, risk={"velocity_redemptions_max": 1, "velocity_window_min": 60}
    )
    ring = campaign_doc(campaign={"id": RING}, risk={"cluster_persons_max": 1})
    s = Server(
        Path(tmp_path_factory.mktemp("http-risk-review")),
        campaigns=[campaign_doc(), doc, ring],
        topology=topology,
    )
    try:
        yield s
    finally:
        s.close()


def flagged(api: Api, sku: str = "JD-1") -> tuple[str, dict[str, Any]]:
    """A fresh person's two grants: one velocity flag naming both; (person, flag)."""
    person = f"p-{uuid.uuid4().hex[:12]}"
    rids = [api.granted(order(person=person, sku=sku, campaign_id=FAST))["id"] for _ in range(2)]
    r = api.get(f"{Q}/queue", as_="audit")
    assert r.status_code == 200, r.text
    mine = [f for f in r.json()["flags"] if f["person_ids"] == [person]]
    assert len(mine) == 1
    f = mine[0]
    assert (f["code"], f["redemption_ids"]) == ("velocity", rids)
    assert f["figures"][0] == {"subject": person, "figure": "redemptions", "value": 2}
    return person, f


def test_a_dismissed_flag_leaves_the_queue_once(fast: Server) -> None:
    api = fast.api
    _, f = flagged(api)
    before = api.get(f"{Q}/queue", as_="ops").json()
    r = api.post(f"{Q}/{f['id']}/review", {"action": "dismiss", "reason": "a family order"},
                 as_="ops")  # fmt: skip
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["reviewed_at"].startswith("2025-02-12")
    assert {k: v for k, v in got.items() if k not in ("reviewed_at", "operator")} == {
        "flag_id": f["id"],
        "action": "dismiss",
        "reason": "a family order",
        "block_id": None,
    }
    after = api.get(f"{Q}/queue", as_="ops").json()
    assert after["open_count"] == before["open_count"] - 1
    assert f["id"] not in [x["id"] for x in after["flags"]]
    assert after["reviews"][0]["flag_id"] == f["id"]
    # Once only; an unknown flag; a bad action; no reason; not an auditor's.
    again = api.post(f"{Q}/{f['id']}/review", {"action": "dismiss", "reason": "x"}, as_="ops")
    assert (again.status_code, again.json()["code"]) == (409, "flag_already_reviewed")
    nope = api.post(f"{Q}/flag-999999/review", {"action": "dismiss", "reason": "x"}, as_="ops")
    assert (nope.status_code, nope.json()["code"]) == (404, "flag_not_found")
    bad = api.post(f"{Q}/{f['id']}/review", {"action": "ban", "reason": "x"}, as_="ops")
    assert bad.status_code == 422
    bare = api.post(f"{Q}/{f['id']}/review", {"action": "dismiss"}, as_="ops")
    assert bare.status_code == 422
    denied = api.post(f"{Q}/{f['id']}/review", {"action": "dismiss", "reason": "x"}, as_="audit")
    assert denied.status_code == 403
    assert api.get(f"{Q}/queue", as_="jd").status_code == 403


def test_block_person_from_a_flag_declines_the_next_order(fast: Server) -> None:
    api = fast.api
    person, f = flagged(api)
    r = api.post(f"{Q}/{f['id']}/review", {"action": "block_person", "reason": "scalper"},
                 as_="ops")  # fmt: skip
    assert r.status_code == 200, r.text
    block_id = r.json()["block_id"]
    assert block_id and r.json()["action"] == "block_person"
    d = api.redeem(order(person=person, campaign_id=FAST))
    assert d.status_code == 200, d.text
    assert [x["code"] for x in d.json()["reasons"]] == ["person_blocked"]
    blocks = api.get(f"/v1/campaigns/{FAST}/blocks", as_="audit").json()["blocks"]
    mine = [b for b in blocks if b["id"] == block_id]
    assert len(mine) == 1 and mine[0]["person_id"] == person and mine[0]["active"]


def test_block_sku_from_a_flag_and_the_queue_survives_a_kill(fast: Server) -> None:
    api = fast.api
    sku = f"JD-{uuid.uuid4().hex[:8]}"
    line = f'{{"sku": "{sku}", "category": "fresh_food", "platform": "jd"}}\n'.encode()
    assert api.put_catalog(line).status_code == 200
    _, f = flagged(api, sku=sku)
    wrong = api.post(f"{Q}/{f['id']}/review",
                     {"action": "block_sku", "reason": "inflated", "sku": "JD-other"},
                     as_="ops")  # fmt: skip
    assert wrong.status_code == 422
    r = api.post(f"{Q}/{f['id']}/review", {"action": "block_sku", "reason": "inflated"},
                 as_="ops")  # fmt: skip
    assert r.status_code == 200, r.text
    d = api.redeem(order(sku=sku, campaign_id=FAST))
    assert [x["code"] for x in d.json()["reasons"]] == ["sku_blocked"]
    before = api.get(f"{Q}/queue", as_="ops").json()
    fast.stop(signal.SIGKILL)
    fast.start()
    assert api.get(f"{Q}/queue", as_="ops").json() == before


def test_a_shared_address_is_flagged_by_its_keyed_value_only(fast: Server) -> None:
    api = fast.api
    text = f"成都市锦江区红星路{uuid.uuid4().hex[:8]}号"
    address = {"adcode": "510104", "text": "  " + text.replace("号", "  号")}
    persons = [f"p-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    rids = [api.granted(order(person=p, campaign_id=RING, delivery_address=address))["id"]
            for p in persons]  # fmt: skip
    r = api.get(f"/v1/campaigns/{RING}/risk/queue", as_="audit")
    mine = [f for f in r.json()["flags"] if f["redemption_ids"] == rids]
    assert len(mine) == 1
    f = mine[0]
    assert (f["code"], f["person_ids"]) == ("shared_identity_cluster", persons)
    subject = f["figures"][0]["subject"]
    assert subject.startswith("address_text:") and len(subject) == len("address_text:") + 64
    assert [x["value"] for x in f["figures"]] == [2, 1]
    assert text not in r.text and "红星路" not in r.text  # never the raw address
