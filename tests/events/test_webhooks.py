"""Webhooks end to end: a real ``lijian serve`` (one process, and a cluster where the
sequencer delivers), a real HTTP receiver that checks every signature. Thresholds fire
once and resolve after a void; the order is kept; a receiver that is down gets everything
once it is back; a kill -9 after the commit and before the delivery loses nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.events.receiver import WAIT_S, Receiver, webhooks_toml
from tests.http import harness
from tests.http.harness import Server, campaign_doc, metric, order

pytestmark = pytest.mark.xdist_group("webhooks")
ALERTS = {"tranche_remaining_pct": [50, 20], "budget_remaining_pct": [97]}
SMALL = {"budget_fen": 170_000}  # 10,000 fen a day; each grant 3,720


def on_the_topologies_run(wanted: list[str]) -> list[str]:
    """Those of ``wanted`` that this run serves on (LIJIAN_TEST_TOPOLOGIES, as the HTTP
    tests: all of them unless it is set; ``make test-fast`` sets one process only)."""
    return [t for t in wanted if t in harness.TOPOLOGIES]


def start_server(tmp: Path, topology: str, hook_url: str, mp: pytest.MonkeyPatch) -> Server:
    plain = harness.clients_toml
    mp.setattr(harness, "clients_toml", lambda: plain() + "\n" + webhooks_toml(hook_url))
    try:
        return Server(tmp, [campaign_doc(campaign=SMALL, alerts=ALERTS)], topology=topology)
    finally:
        mp.setattr(harness, "clients_toml", plain)


def stored_ids(server: Server) -> list[str]:
    r = server.api.get("/v1/admin/events", as_="ops")
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["events"]]


def summary(got: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["type"], e["data"].get("threshold_pct"), e["data"].get("resolved")) for e in got]


def in_order_without_loss(got: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """Duplicates only with the same id and the same body; first arrivals in id order."""
    first: dict[str, dict[str, Any]] = {}
    for e in got:
        assert first.setdefault(e["id"], e) == e, f"{e['id']} came twice with other bodies"
    assert list(first) == ids
    return list(first.values())


@pytest.mark.parametrize("topology", on_the_topologies_run(["one", "pg-2gw"]))
def test_thresholds_are_delivered_once_then_resolved(
    tmp_path: Path, receiver: Receiver, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.start()
    server = start_server(tmp_path, topology, receiver.url, monkeypatch)
    try:
        api = server.api
        api.granted(order())
        second = api.granted(order())  # 2,560 left: under 50 %; budget under 97 %
        assert api.post(f"/v1/redemptions/{second['id']}/void").status_code == 200
        api.granted(order())  # under again: already announced, nothing new
        ids = stored_ids(server)
        got = in_order_without_loss(receiver.wait_for(ids), ids)
        # The receiver notes an event before it answers; the delivery counts it once the
        # answer is read: wait (bounded) for the count to catch up.
        series = f'lijian_webhook_deliveries_total{{receiver="{receiver.url}"}}'
        deadline = time.monotonic() + WAIT_S
        while metric(text := api.get("/metrics", signed=False).text, series) < len(ids):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    finally:
        server.close()
    assert summary(got) == [
        ("tranche.threshold", 50, False),
        ("budget.threshold", 97, False),
        ("tranche.threshold", 50, True),
        ("budget.threshold", 97, True),
    ]
    assert got[0]["data"]["remaining_fen"] == 2_560 and got[2]["data"]["remaining_fen"] == 6_280
    assert receiver.bad_signatures == 0
    assert metric(text, series) >= 4
    assert metric(text, "lijian_events_recorded_total") == 4


def test_a_receiver_that_was_down_gets_everything(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path, "one", receiver.url, monkeypatch)  # receiver not up
    try:
        api = server.api
        first = api.granted(order())
        api.granted(order())
        assert api.post(f"/v1/redemptions/{first['id']}/void").status_code == 200
        api.granted(order())
        assert api.redeem(order()).json()["reasons"][0]["code"] == "sold_out"
        ids = stored_ids(server)
        assert len(ids) == 5
        text = api.get("/metrics", signed=False).text
        series = f'lijian_webhook_failures_total{{receiver="{receiver.url}"}}'
        assert metric(text, series) >= 1  # it has been trying
        receiver.start()
        got = in_order_without_loss(receiver.wait_for(ids), ids)
    finally:
        server.close()
    assert [e["type"] for e in got] == [
        "tranche.threshold", "budget.threshold", "tranche.threshold", "budget.threshold",
        "tranche.sold_out",
    ]  # fmt: skip


@pytest.mark.parametrize("topology", on_the_topologies_run(["one", "pg-w2"]))
def test_a_kill_9_between_commit_and_delivery_still_delivers(
    tmp_path: Path, receiver: Receiver, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path, topology, receiver.url, monkeypatch)
    try:
        api = server.api
        api.granted(order())
        api.granted(order())  # committed with its events; the receiver is down
        ids = stored_ids(server)
        assert len(ids) == 2
        server.stop(signal.SIGKILL)  # no graceful stop: nothing flushed, no cursor moved
        receiver.start()
        server.start()
        got = in_order_without_loss(receiver.wait_for(ids), ids)
        assert stored_ids(server) == ids  # the restart recorded nothing again
    finally:
        server.close()
    assert summary(got) == [("tranche.threshold", 50, False), ("budget.threshold", 97, False)]
