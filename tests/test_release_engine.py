"""Admission windows at the engine (a real SQLite ledger, the manual clock): what waits
and what is answered at once, a retry while waiting, a graceful stop, a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lijian.clock import ManualClock
from lijian.core.errors import EngineStopped, IdempotencyKeyReused
from lijian.core.order import Address, Person
from lijian.engine import Engine
from lijian.outcome import Outcome
from tests.support import CID, at, catalog, order, settings

OPEN_MS = at("2025-02-12 10:00")
END_MS = OPEN_MS + 2_000


def run(db: Path, body: Callable[[Engine], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        s = settings(release={"admission_window_s": 2})
        eng = Engine([s], db, clock=ManualClock(at("2025-02-12 09:59")), background=False)
        eng.catalog = catalog()
        await eng.start()
        try:
            await body(eng)
        finally:
            await eng.aclose()

    asyncio.run(main())


def of(pid: str, n: int = 1) -> Any:
    return msgspec.structs.replace(order(f"{pid}-{n}"), person=Person(pid, True))


def test_a_retry_while_waiting_shares_the_answer_and_another_body_is_refused(tmp_path: Path):
    async def body(eng: Engine) -> None:
        await eng.set_clock(OPEN_MS)
        first = eng.redeem_submit(of("a"), "unionpay", "k-1", "fp-1")
        again = eng.redeem_submit(of("a"), "unionpay", "k-1", "fp-1")
        assert isinstance(first, asyncio.Future) and isinstance(again, asyncio.Future)
        with pytest.raises(IdempotencyKeyReused):
            eng.redeem_submit(of("a", 2), "unionpay", "k-1", "fp-other")
        assert eng.status(CID)["admission_window"] == {"waiting": 1, "max_waiting": 50_000}
        await eng.set_clock(END_MS)
        a, b = await first, await again
        assert a.status == b.status == 201 and a.body["id"] == b.body["id"]
        assert eng.status(CID)["today"]["held_fen"] == 3_720

    run(tmp_path / "l.db", body)


def test_what_cannot_be_granted_is_answered_at_once(tmp_path: Path):
    async def body(eng: Engine) -> None:
        await eng.set_clock(OPEN_MS)
        outside = msgspec.structs.replace(of("b"), delivery_address=Address("500101"))
        out = eng.redeem_submit(outside, "unionpay", "k-2", "fp-2")
        assert isinstance(out, Outcome) and out.status == 200
        assert [r["code"] for r in out.body["reasons"]] == ["address_outside_city"]
        assert eng.windows.waiting == 0

    run(tmp_path / "l.db", body)


def test_a_graceful_stop_answers_503_and_the_seed_survives_the_restart(tmp_path: Path):
    db = tmp_path / "l.db"
    seen: dict[str, Any] = {}

    async def first(eng: Engine) -> None:
        seen["commitment"] = eng.public_status(CID)["today"]["draw"]["commitment"]
        await eng.set_clock(OPEN_MS)
        seen["waiting"] = eng.redeem_submit(of("c"), "unionpay", "k-3", "fp-3")
        eng.windows.close()  # what aclose does first
        with pytest.raises(EngineStopped):
            await seen["waiting"]

    async def second(eng: Engine) -> None:
        assert eng.public_status(CID)["today"]["draw"]["commitment"] == seen["commitment"]
        await eng.set_clock(OPEN_MS + 500)
        again = eng.redeem_submit(of("c"), "unionpay", "k-3", "fp-3")
        assert isinstance(again, asyncio.Future)
        await eng.set_clock(END_MS)
        assert (await again).status == 201

    run(db, first)
    run(db, second)
