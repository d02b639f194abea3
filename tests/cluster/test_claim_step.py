"""A sharded sequencer's claim step (``Sequencer.claim_step``, cluster/shard_guard.py)
runs inside the sequencer's grouped path for a frame's redemptions (``_redeems``): each
new redemption is claimed, then decided with the claim's answer; a repeat of a known
key and a campaign the ledger lacks are decided at once, without a claim.

The sequencer and its engine run in this process on a real SQLite file and a real TCP
socket; the claim step is a stand-in that says which orders another campaign holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lijian.clock import ManualClock
from lijian.cluster.sequencer import Sequencer
from lijian.cluster.tls import server_context
from lijian.core.order import Order
from lijian.engine import Engine
from lijian.http.admission import Admission
from lijian.http.clients import load_clients
from lijian.outcome import Outcome
from tests.cluster.wire_client import OK, WireClient, connect, ticket
from tests.http.harness import clients_toml, link_credentials, order
from tests.support import at, settings

FP = hashlib.sha256(b"a request").hexdigest()


class HeldElsewhere:
    """Claims every order; those named in ``elsewhere`` are held by another campaign."""

    def __init__(self, engine: Engine, elsewhere: set[str]) -> None:
        self.engine = engine
        self.elsewhere = elsewhere
        self.seen: list[str] = []

    def needs_claim(self, o: Order, client_id: str, key: str) -> bool:
        led = self.engine.ledger
        return (client_id, key) not in led.idempotency and o.campaign_id in led.books

    async def claimed(
        self, o: Order, decide: Callable[[bool], Outcome | asyncio.Future[Outcome]]
    ) -> Outcome:
        self.seen.append(o.order_id)
        await asyncio.sleep(0)  # a round trip's worth: the decision comes later
        out = decide(o.order_id in self.elsewhere)
        return out if isinstance(out, Outcome) else await out


def test_a_frame_of_redemptions_is_claimed_in_the_grouped_path(tmp_path: Path) -> None:
    clients_file = tmp_path / "clients.toml"
    clients_file.write_text(clients_toml(), encoding="utf-8")
    tls = link_credentials(tmp_path / "tls", 1)
    frames: list[int] = []
    step: list[HeldElsewhere] = []

    async def scenario() -> None:
        engine = Engine([settings()], tmp_path / "l.db", clock=ManualClock(at("2025-02-12 10:00")),
                        background=False)  # fmt: skip
        await engine.start()
        seq = Sequencer(engine, Admission(load_clients(clients_file)),
                        {"settings": [], "manual_clock": True},
                        ssl_context=server_context(tls / "sequencer"))  # fmt: skip
        step.append(HeldElsewhere(engine, {"O-2"}))
        seq.claim_step = step[0]
        grouped = seq._redeems

        def counted(calls: list[Any], link: Any) -> None:
            frames.append(len(calls))
            grouped(calls, link)

        seq._redeems = counted  # type: ignore[method-assign]
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        await seq.listen_on(listener)
        try:
            await asyncio.to_thread(talk, listener.getsockname())
        finally:
            await seq.close()
            await engine.aclose()

    answers: dict[int, Any] = {}

    def talk(address: tuple[str, int]) -> None:
        c = WireClient(connect(address, tls / "gateway-1"))
        calls = [
            order("O-1"),
            order("O-2"),  # held by another campaign
            order("O-3"),
            order("O-4", campaign_id="nowhere"),  # no claim: declined at once
        ]
        c.send([[10 + i, "redeem", ticket("unionpay"), [o, "unionpay", f"k-{i}", FP]]
                for i, o in enumerate(calls)])  # fmt: skip
        answers.update(c.answers(len(calls)))
        c.close()

    asyncio.run(scenario())
    assert frames == [4]  # the four together, through the grouped path
    assert step[0].seen == ["O-1", "O-2", "O-3"]  # in arrival order, "nowhere" not
    assert all(a.kind == OK for a in answers.values())
    codes = {i: [r["code"] for r in answers[i].payload[1].get("reasons", [])] for i in answers}
    assert "other_government_subsidy" in codes[11]
    assert "other_government_subsidy" not in codes[10] + codes[12]
    assert codes[13] == ["campaign_not_found"]
