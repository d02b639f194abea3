"""A pause or a block is answered from memory (no queue, no commit), with exactly the
reasons the writer itself gives for the same order at the same moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from lijian.outcome import Outcome
from tests.support import CID, catalog, order, settings


def operate(e: Engine, op: str, body: dict[str, Any]) -> Outcome:
    out: Outcome = e.call(e.operate, op, CID, body, "ops")
    return out


def by_the_writer(e: Engine, o: Any, key: str) -> Outcome:
    async def run() -> Outcome:
        _, ev = e.evaluate(o)
        out: Outcome = await e.writer.submit(e._hold_command(o, ev, "unionpay", key, key))
        return out

    out: Outcome = e.call(run)
    return out


def test_pause_and_blocks_are_declined_fast_with_the_writers_reasons(tmp_path: Path) -> None:
    e = Engine([settings()], tmp_path / "l.db", parse_clock("manual:2025-02-12T10:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        assert (
            operate(e, "block", {"kind": "person", "person_id": "p-b", "reason": "r"}).status == 201
        )
        sku = {"kind": "sku", "platform": "jd", "sku": "JD-2", "reason": "r"}
        assert operate(e, "block", sku).status == 201
        cases = [
            (order(1, person="p-b"), ["person_blocked"]),
            (order(2, person="p-c", sku="JD-2"), ["sku_blocked"]),
        ]
        for o, want in cases:
            commands = e.writer.stats.commands
            fast = Blocking(e).redeem(o, "unionpay", f"k-{o.order_id}", "f")
            assert e.writer.stats.commands == commands  # answered without the writer
            assert [r["code"] for r in fast.body["reasons"]] == want
            slow = by_the_writer(e, o, f"w-{o.order_id}")
            assert (slow.status, slow.body) == (fast.status, fast.body)
        assert operate(e, "pause", {"reason": "stop"}).status == 200
        o = order(3, person="p-b", sku="JD-2")
        commands = e.writer.stats.commands
        fast = Blocking(e).redeem(o, "unionpay", "k3", "f3")
        assert e.writer.stats.commands == commands
        codes = ["campaign_paused", "person_blocked", "sku_blocked"]
        assert [r["code"] for r in fast.body["reasons"]] == codes
        assert by_the_writer(e, o, "w3").body == fast.body
        quote = e.call(e.quote, o)
        assert [r["code"] for r in quote["reasons"]] == codes
        # Not blocked, campaign resumed: granted by the writer as before.
        assert operate(e, "resume", {"reason": "go"}).status == 200
        assert Blocking(e).redeem(order(4, person="p-d"), "unionpay", "k4", "f4").status == 201
    finally:
        e.close()
