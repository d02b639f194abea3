"""The audit endpoint and the evidence report, off the writer's path (the settlement
report is read from the ledger's daybook: one row per platform, nothing to walk).

The ledger lives on the engine's loop with the writer (writer.py), so a report that walks
every redemption in one go holds the loop that long: measured, two auditors looping on
``GET …/audit`` at 60,000 redemptions took grants from p50 4 ms to 237 ms. A thread
would read the ledger half-updated, and would hold the GIL the same.

So a report walks the ledger here in slices: at most ``SLICE_S`` of work, then a pause
long enough that reports take at most ``DUTY`` of the loop's time, so requests run in
between and wait for at most one slice. And one report runs at a time (``ReportGate``):
two auditors looping take turns instead of doubling the share.

What a slice sees: the book figures that belong together (tranches, conservation) are
read in one step; persons and redemptions are each checked or summed on their own, as
they are when their slice comes (the periodic audit's argument, events/audits.py). A
closed day's settlement and evidence cannot move while they are summed: captures and
refunds are counted on the day they happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from lijian.core.book import Person
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption
from lijian.store import Store

SLICE_S = 0.001  # work between two pauses: a request waits at most about this long
# Reports take at most this share of the loop's time: an audit of 60,000 redemptions is
# ~0.1 s of work, so ~2 s to answer, and grants do not feel it (measured: the test
# tests/http/test_audit_under_load.py; at 10% the p50 of grants behind a sequencer on
# PostgreSQL moved by up to 24% on a loaded 2-core machine).
DUTY = 0.05
CHECK_EVERY_ITEMS = 500  # how often the slice's clock is read
T = TypeVar("T")


class Pacer:
    """Slices of at most ``slice_s``, each followed by a pause so that the work takes at
    most ``duty`` of the time."""

    def __init__(self, slice_s: float = SLICE_S, duty: float = DUTY) -> None:
        assert slice_s > 0 and 0 < duty <= 1
        self.slice_s = slice_s
        self.rest = (1 - duty) / duty
        self._t0 = time.perf_counter()

    async def pause(self) -> None:
        busy_s = time.perf_counter() - self._t0
        await asyncio.sleep(busy_s * self.rest)
        self._t0 = time.perf_counter()

    async def walk(self, items: list[T], work: Callable[[list[T]], None]) -> None:
        """``work`` on ``items`` in parts, pausing whenever a slice is used up."""
        for i in range(0, len(items), CHECK_EVERY_ITEMS):
            work(items[i : i + CHECK_EVERY_ITEMS])
            if time.perf_counter() - self._t0 >= self.slice_s:
                await self.pause()


class ReportGate:
    """One report at a time per engine (see the module's docstring)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.pacer: Callable[[], Pacer] = Pacer

    async def audit(self, ledger: Callable[[], Ledger]) -> tuple[Ledger, list[str]]:
        """Every invariant violation of the ledger (``check_invariants``' parts)."""
        from lijian.core.invariants import (
            money_problems,
            person_problems,
            redemption_problems,
            window_problems,
        )

        async with self.lock:
            p = self.pacer()
            await p.pause()
            led = ledger()
            out: list[str] = []
            for b in led.books.values():  # one step: these figures belong together
                out += money_problems(b) + window_problems(b)
            for b in list(led.books.values()):
                cap_fen = b.settings.limits.person_savings_cap_fen

                def persons(part: list[Person], cid: str = b.id, cap: int = cap_fen) -> None:
                    out.extend(person_problems(cid, cap, part))

                await p.walk(list(b.persons.values()), persons)

            def redemptions(part: list[Redemption]) -> None:
                for r in part:
                    out.extend(redemption_problems(r))

            await p.walk(list(led.redemptions.values()), redemptions)
            return led, out

    async def summed(
        self, ledger: Callable[[], Ledger], add: Callable[[Iterable[Redemption]], None]
    ) -> None:
        """``add`` every redemption of the ledger, in slices."""
        async with self.lock:
            p = self.pacer()
            await p.pause()
            await p.walk(list(ledger().redemptions.values()), add)


async def settlement_report(
    gate: ReportGate, ledger: Callable[[], Ledger], campaign_id: str, day: str
) -> dict[str, object]:
    """The day's settlement: read from the daybook (lijian.core.daybook), one row per
    platform, so unlike the other reports it needs no walk and no turn at the gate."""
    from lijian.core.settlement import settlement

    return dict(settlement(ledger(), campaign_id, day))  # the port's plain JSON object


async def evidence_report(
    gate: ReportGate,
    ledger: Callable[[], Ledger],
    store: Store,
    campaign_id: str,
    day: str,
) -> dict[str, object]:
    """The signed bundle of a closed day (evidence/bundle.py); its entries are read from
    the store on another thread (committed: the day's close is, before it is listed)."""
    from lijian.core.errors import NotFound
    from lijian.evidence.bundle import (
        DayNotClosed,
        DayRows,
        campaigns_of,
        chain_range,
        day_changes,
        encode_holds,
        held_before,
        server_key,
        sign,
        wanted_vouchers,
    )

    key = server_key()
    closes = list(store.day_closes)
    try:
        c = chain_range(closes, campaign_id, day)  # a day not closed: refused before the walk
    except DayNotClosed as exc:
        raise NotFound(str(exc)) from None
    bodies = await asyncio.to_thread(store.range_bodies, c["from_seq"], c["to_seq"])
    wanted = await asyncio.to_thread(held_before, bodies)  # decoding: off the loop too
    rows = DayRows(ledger().book(campaign_id), day)
    await gate.summed(ledger, rows.add)
    holds = encode_holds(wanted, ledger().redemptions)  # a few: held before, used today
    vouchers = campaigns_of(await asyncio.to_thread(wanted_vouchers, bodies), ledger().vouchers)
    # Operators' changes of the day, as ``lijian evidence`` writes them (day_payload):
    # a few, read on the loop; then the document and its signature need the ledger no more.
    changes = day_changes(ledger(), campaign_id, day)

    def signed() -> dict[str, object]:
        return sign({**rows.payload(closes, bodies, holds, vouchers), "changes": changes}, key)

    return await asyncio.to_thread(signed)
