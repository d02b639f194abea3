"""``vouchers.threshold`` end to end: a real ``lijian serve`` (one process, and a cluster
whose sequencer delivers) with a campaign of claimed vouchers and ``[alerts]
vouchers_left_pct``, a real receiver that checks every signature. Each threshold is
announced once when today's whole vouchers left fall below it, never again while they
stay below; a campaign without vouchers is refused the key."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lijian.core.settings import SettingsError, parse_settings
from tests.events.receiver import Receiver, webhooks_toml
from tests.events.test_webhooks import on_the_topologies_run, stored_ids
from tests.http import harness
from tests.http.harness import Server, campaign_doc
from tests.support import CID, TIANFU_SQUARE

pytestmark = pytest.mark.xdist_group("webhooks")
V = 3_000
PER_DAY = 10  # whole vouchers a day: 17 days of 10
ALERTS = {"vouchers_left_pct": [50, 20]}


def claims_doc() -> dict[str, object]:
    return campaign_doc(
        campaign={"budget_fen": 17 * PER_DAY * V},
        refunds={"full_refund_restores_quota": "immediately"},
        claims={"mode": "claim", "voucher_value_fen": V, "valid_for": "day"},
        alerts=ALERTS,
    )


def start_server(tmp: Path, topology: str, hook_url: str, mp: pytest.MonkeyPatch) -> Server:
    plain = harness.clients_toml
    mp.setattr(harness, "clients_toml", lambda: plain() + "\n" + webhooks_toml(hook_url))
    try:
        return Server(tmp, [claims_doc()], topology=topology)
    finally:
        mp.setattr(harness, "clients_toml", plain)


def claim(server: Server) -> None:
    body = {
        "person": {"id": f"p-{uuid.uuid4().hex[:12]}", "real_name_verified": True},
        "device_location": {"lng": TIANFU_SQUARE[0], "lat": TIANFU_SQUARE[1], "crs": "gcj02"},
    }
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r = server.api.post(f"/v1/campaigns/{CID}/claims", body, headers=key)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("topology", on_the_topologies_run(["one", "pg-2gw"]))
def test_vouchers_left_thresholds_are_announced_once(
    tmp_path: Path, receiver: Receiver, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.start()
    server = start_server(tmp_path, topology, receiver.url, monkeypatch)
    try:
        for _ in range(5):
            claim(server)  # 5 of 10 left: not below 50 %
        assert stored_ids(server) == []
        claim(server)  # 4 left: below 50 %
        claim(server)
        claim(server)  # 2 left: not below 20 %
        claim(server)  # 1 left: below 20 %
        claim(server)  # sold out: below both already, nothing more of this kind
        ids = stored_ids(server)
        got = receiver.wait_for(ids)
        today = server.api.status(CID)["today"]
    finally:
        server.close()
    mine = [e for e in got if e["type"] == "vouchers.threshold"]
    assert [e["data"] for e in mine] == [
        {"date": today["date"], "threshold_pct": 50, "vouchers_left": 4,
         "vouchers_released": PER_DAY, "resolved": False},
        {"date": today["date"], "threshold_pct": 20, "vouchers_left": 1,
         "vouchers_released": PER_DAY, "resolved": False},
    ]  # fmt: skip
    assert {e["type"] for e in got} == {"vouchers.threshold", "tranche.sold_out",
                                        "vouchers.sold_out"}  # fmt: skip
    assert receiver.bad_signatures == 0


def test_a_campaign_without_vouchers_is_refused_the_key() -> None:
    with pytest.raises(SettingsError) as e:
        parse_settings(campaign_doc(alerts=ALERTS))
    assert [(p.path, p.message) for p in e.value.problems] == [
        ("alerts.vouchers_left_pct", 'needs [claims] mode = "claim"')
    ]


def test_a_threshold_resolves_when_used_vouchers_give_whole_vouchers_back() -> None:
    """On the ledger: six of ten vouchers claimed (4 left: below 50 %), then each paying a
    2,000 discount with its 3,000 voucher gives 1,000 back to the open tranche; after three,
    5 whole vouchers are left (not below 50 %): resolved, once, whatever follows."""
    from lijian.events.watch import AlertWatch
    from tests.core.test_vouchers import ClaimDesk
    from tests.support import order

    d = ClaimDesk(campaign={"budget_fen": 17 * PER_DAY * V}, alerts={"vouchers_left_pct": [50]})
    watch = AlertWatch(d.settings)
    seen: list[dict[str, object]] = []

    def observe() -> None:
        seen.extend(dict(e.data) for e in watch.observe(d.ledger, d.now_ms))

    persons = [f"p-{i}" for i in range(6)]
    vouchers = []
    for p in persons:
        vouchers.append(d.voucher(p))
        observe()
    for i, (p, vid) in enumerate(zip(persons, vouchers, strict=True)):
        # payable 2 × 6,000: the 10,000 tier, 2,000 off; 1,000 of the voucher back
        o = order(i + 1, person=p, price_fen=6_000, platform_discount_fen=0, voucher_id=vid)
        d.capture(d.granted(o))
        observe()
    day = "2025-02-12"
    assert seen == [
        {"date": day, "threshold_pct": 50, "vouchers_left": 4, "vouchers_released": PER_DAY,
         "resolved": False},
        {"date": day, "threshold_pct": 50, "vouchers_left": 5, "vouchers_released": PER_DAY,
         "resolved": True},
    ]  # fmt: skip
