"""Webhooks of sharded campaigns (docs/SCALE-OUT.md, docs/EVENTS.md): each shard's
sequencer delivers its own events, and their ids name the shard, so a receiver of both
shards gets two ids where each ledger numbers its first event 1, and they are the ids
the sharded listing shows. One process keeps its plain ``evt_<seq>``. Real processes, a
real receiver that checks every signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.events.receiver import Receiver, webhooks_toml
from tests.http import harness
from tests.http.harness import SHARD_B_CID, Api, Server, campaign_doc
from tests.support import CID

pytestmark = [pytest.mark.xdist_group("shards")]

# Each ledger's first two events are the two pauses: the same seqs on both shards.
WANT_IDS = {
    "one": ["evt_0000000000000001", "evt_0000000000000002"],
    "pg-shards": ["evt_a0000000000000001", "evt_b0000000000000001"],
}


def _server(tmp: Path, topology: str, hook_url: str, mp: pytest.MonkeyPatch) -> Server:
    """Campaign CID (shard a) and SHARD_B_CID (shard b), every sequencer delivering to
    ``hook_url`` (the clients file is every shard's)."""
    plain = harness.clients_toml
    mp.setattr(harness, "clients_toml", lambda: plain() + "\n" + webhooks_toml(hook_url))
    try:
        docs = [campaign_doc(), campaign_doc(campaign={"id": SHARD_B_CID})]
        return Server(tmp, docs, topology=topology)
    finally:
        mp.setattr(harness, "clients_toml", plain)


def _listing(api: Api, after: str = "") -> dict[str, Any]:
    r = api.get("/v1/admin/events" + (f"?after={after}" if after else ""), as_="ops")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _sequencer_urls(server: Server) -> list[str]:
    """pg-shards: each sequencer's own HTTP port (shard a, then b)."""
    seqs = [c for c in server.cmds if "sequencer" in c]
    return [f"http://127.0.0.1:{c[c.index('--port') + 1]}" for c in seqs]


@pytest.mark.parametrize("topology", ["one", "pg-shards"])
def test_a_delivered_event_has_the_id_the_listing_shows(
    tmp_path: Path, receiver: Receiver, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both shards' first events arrive as two events (``evt_a…1``, ``evt_b…1``), each
    body exactly as ``GET /v1/admin/events`` lists it through a gateway, signed as ever;
    a delivered id is a cursor of the listing, and each shard's own port names its ids
    alike. One process: its plain ids, as before."""
    receiver.start()
    server = _server(tmp_path, topology, receiver.url, monkeypatch)
    own: list[list[str]] = []
    try:
        for cid in (CID, SHARD_B_CID):
            r = server.api.post(f"/v1/campaigns/{cid}/pause", {"reason": "drill"}, as_="ops")
            assert r.status_code == 200, r.text
        listed = _listing(server.api)["events"]
        ids = [e["id"] for e in listed]
        got = receiver.wait_for(ids)
        after_first = [e["id"] for e in _listing(server.api, ids[0])["events"]]
        for url in _sequencer_urls(server):
            api = Api(url)
            try:
                own.append([e["id"] for e in _listing(api)["events"]])
                # its own id given back to its own port: read as its own (after it)
                assert _listing(api, own[-1][0])["events"] == []
            finally:
                api.close()
    finally:
        server.close()
    assert ids == WANT_IDS[topology]
    assert [(e["type"], e["campaign_id"]) for e in listed] == [
        ("campaign.paused", CID), ("campaign.paused", SHARD_B_CID)]  # fmt: skip
    by_id = {e["id"]: e for e in got}
    assert len(got) == 2 and by_id == {e["id"]: e for e in listed}  # the very bodies
    assert receiver.bad_signatures == 0
    assert after_first == ids[1:]
    assert own == ([[ids[0]], [ids[1]]] if topology == "pg-shards" else [])
