"""The periodic audit (lijian.events.audits): a ledger broken in the running engine is
announced as ``audit.failed`` to a real HTTP receiver without anyone calling the audit
endpoint; once per distinct failure, not once per period; the sliced check finds exactly
what ``check_invariants`` finds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from lijian.clock import parse_clock
from lijian.core.invariants import check_invariants
from lijian.engine import Engine
from lijian.events import audits
from lijian.events.audits import EVERY_S_DEFAULT, audit_every_s, identity, sliced_violations
from lijian.events.model import ALL_TYPES
from lijian.events.receivers import Receiver as Hook
from tests.events.receiver import SECRET, Receiver
from tests.http.harness import free_port
from tests.support import CID, catalog, order, settings

DAY = "2025-02-12"
WAIT_S = 30.0


def new_engine(db: Path) -> Engine:
    s = settings(campaign={"budget_fen": 170_000})
    return Engine([s], db, parse_clock(f"manual:{DAY}T10:00:00+08:00"), background=False)


async def until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def grant(e: Engine, n: int) -> str:
    out = await e.redeem(order(n, person=f"p-{n}"), "unionpay", f"K{n}", f"f{n}")
    assert out.status == 201, out.body
    return str(out.body["id"])


def audit_events(e: Engine) -> list[dict[str, Any]]:
    tz = e.settings(CID).tz
    return [ev.body(tz) for ev in e.store.read_events(0, 500) if ev.type == "audit.failed"]


def test_a_broken_ledger_is_announced_without_asking_once_per_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIJIAN_AUDIT_EVERY_S", "0.1")
    receiver = Receiver(free_port())
    receiver.start()
    e = new_engine(tmp_path / "l.db")
    url = receiver.url
    e.enable_webhooks([Hook(url, SECRET.encode(), frozenset(ALL_TYPES), backoff_max_s=0.5)])

    async def run() -> str:
        await e.start()
        try:
            await e.catalog_upsert(list(catalog().rows()))
            rid = await grant(e, 1)
            runs = e.audits.runs
            await until(lambda: e.audits.runs >= runs + 2, "two sound audits")
            assert audit_events(e) == []  # a sound ledger: nothing

            # What a bug in the engine would do: money from nowhere.
            e.ledger.books[CID].tranches[DAY].available_fen += 7
            await until(lambda: len(audit_events(e)) == 1, "the first audit.failed")
            runs = e.audits.runs
            await grant(e, 2)  # the figures of the failure change; it is the same failure
            await until(lambda: e.audits.runs >= runs + 3, "three more audits")
            assert len(audit_events(e)) == 1
            report = await e.audit_report(CID)  # the endpoint: nothing new to announce
            assert report["ok"] is False
            assert len(audit_events(e)) == 1

            # Another failure: announced by itself, only it.
            r = e.ledger.redemptions[rid]
            r.clawed_back_fen = r.discount_fen + 1
            await until(lambda: len(audit_events(e)) == 2, "the second audit.failed")
            ids = [ev["id"] for ev in audit_events(e)]
            await asyncio.to_thread(receiver.wait_for, ids)
            return rid
        finally:
            await e.aclose()

    try:
        rid = asyncio.run(run())
        got = [ev for ev in receiver.got if ev["type"] == "audit.failed"]
    finally:
        receiver.stop()
    assert receiver.bad_signatures == 0
    assert [ev["id"] for ev in got] == [ev["id"] for ev in audit_events_of(tmp_path / "l.db")]
    first, second = got[0]["data"], got[1]["data"]
    assert first["count"] == len(first["violations"]) >= 1
    assert all(CID in v and ("tranche" in v or "money" in v) for v in first["violations"])
    assert second == {
        "count": 2,
        "violations": [
            f"redemption {rid}: clawbacks exceed the discount",
            f"redemption {rid}: card refund + clawback != returned value",
        ],
    }
    assert got[0]["campaign_id"] == got[1]["campaign_id"] == CID


def audit_events_of(db: Path) -> list[dict[str, Any]]:
    from lijian.store import open_store

    store = open_store(db)
    try:
        return [{"id": ev.id} for ev in store.read_events(0, 500) if ev.type == "audit.failed"]
    finally:
        store.close()


def test_the_sliced_check_finds_what_check_invariants_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audits, "SLICE_ITEMS", 2)  # several slices of persons, redemptions
    monkeypatch.setenv("LIJIAN_AUDIT_EVERY_S", "0")
    e = new_engine(tmp_path / "l.db")

    async def run() -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
        await e.start()
        try:
            await e.catalog_upsert(list(catalog().rows()))
            rids = [await grant(e, n) for n in range(1, 3)]
            sound = await sliced_violations(lambda: e.ledger, 0)
            b = e.ledger.books[CID]
            b.tranches[DAY].held_fen += 5
            b.persons["p-2"].held_fen = -1
            e.ledger.redemptions[rids[0]].card_refunded_fen = 10**9
            return check_invariants(e.ledger), sound, await sliced_violations(lambda: e.ledger, 0)
        finally:
            await e.aclose()

    whole, sound, sliced = asyncio.run(run())
    assert sound == {CID: []}
    assert len(whole) >= 4
    assert sorted(sliced) == [CID]
    assert sorted(sliced[CID]) == sorted(whole)


def test_the_period_comes_from_the_environment_only() -> None:
    assert audit_every_s({}) == EVERY_S_DEFAULT == 300.0
    assert audit_every_s({"LIJIAN_AUDIT_EVERY_S": "0"}) == 0.0
    assert audit_every_s({"LIJIAN_AUDIT_EVERY_S": " 60 "}) == 60.0
    for bad in ("soon", "-1", "nan", "86401"):
        with pytest.raises(ValueError, match=r"^LIJIAN_AUDIT_EVERY_S must be seconds between"):
            audit_every_s({"LIJIAN_AUDIT_EVERY_S": bad})


def test_a_failure_is_known_by_its_text_without_figures() -> None:
    a = f"{CID}: money not conserved: unreleased 10 + available 7 = 17 != budget 10"
    b = f"{CID}: money not conserved: unreleased 3 + available 14 = 17 != budget 10"
    assert identity(a) == identity(b)
    assert identity(f"{CID} tranche 2025-02-12: held_fen is negative (-1)") != identity(
        f"{CID} tranche 2025-02-13: held_fen is negative (-1)"
    )
