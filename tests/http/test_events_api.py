"""GET /v1/admin/events?after=evt_…: the outbox paged, the same answer on every topology
(a receiver that was down reads what it missed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.http.harness import Server, campaign_doc, order

pytestmark = pytest.mark.xdist_group("http-events")
ALERTS = {"tranche_remaining_pct": [90, 70, 50], "budget_remaining_pct": []}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    doc = campaign_doc(campaign={"budget_fen": 170_000}, alerts=ALERTS)  # 10,000 fen a day
    s = Server(Path(tmp_path_factory.mktemp(f"events-{topology}")), [doc], topology=topology)
    try:
        yield s
    finally:
        s.close()


def _ids(topology: str) -> tuple[str, Callable[[int], str]]:
    """How ids and cursors read: one ledger's ``evt_<seq>``; through sharded gateways an
    id names its shard (``evt_a…``) and ``next_after`` every shard's position."""
    if topology == "pg-shards":
        return "evt_a", lambda seq: f"evt_a{seq}"
    return "evt_", lambda seq: f"evt_{seq:016d}"


def test_events_page_after_an_id(small: Server) -> None:
    api = small.api
    pre, cursor = _ids(small.topology)
    assert api.get("/v1/admin/events", as_="ops").json() == {"events": [], "next_after": None}
    api.granted(order())  # 6,280 left: under 90 and 70, not 50
    api.granted(order())  # 2,560 left: under 50
    first = api.get("/v1/admin/events?limit=2", as_="audit").json()
    assert [e["id"] for e in first["events"]] == [f"{pre}{n:016d}" for n in (1, 2)]
    assert [e["data"]["threshold_pct"] for e in first["events"]] == [90, 70]
    assert first["next_after"] == cursor(2)
    rest = api.get(f"/v1/admin/events?after={first['next_after']}&limit=2", as_="ops").json()
    assert [(e["id"], e["data"]["threshold_pct"]) for e in rest["events"]] == [
        (pre + "0000000000000003", 50)
    ]
    assert rest["next_after"] is None
    whole = api.get("/v1/admin/events", as_="ops").json()["events"]
    assert whole == first["events"] + rest["events"]
    assert whole[2] == {
        "id": pre + "0000000000000003",
        "type": "tranche.threshold",
        "campaign_id": "chengdu-2025-spring",
        "occurred_at": "2025-02-12T10:00:00+08:00",
        "data": {"date": "2025-02-12", "threshold_pct": 50, "remaining_fen": 2_560,
                 "released_fen": 10_000, "resolved": False},
    }  # fmt: skip


def test_events_refuse_bad_parameters_and_other_roles(small: Server) -> None:
    api = small.api
    bad = api.get("/v1/admin/events?after=nope", as_="ops")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "after"
    for blank in ("after=", "limit="):  # a blank value is a bad one, not an absent one
        bad = api.get(f"/v1/admin/events?{blank}", as_="ops")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == blank[:-1]
    bad = api.get("/v1/admin/events?limit=501", as_="ops")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"
    many = "&".join(f"x{i}=1" for i in range(17))  # past QUERY_FIELDS_MAX: not a 500
    bad = api.get(f"/v1/admin/events?{many}", as_="ops")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query"
    assert api.get("/v1/admin/events").status_code == 403  # a channel key
