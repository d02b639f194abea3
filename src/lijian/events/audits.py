"""The periodic audit: the engine checks its own ledger's invariants every few minutes and
records ``audit.failed`` by itself, so an operator learns of a broken ledger without
calling ``GET /v1/campaigns/{id}/audit``.

It runs on the engine's loop (the ledger lives there, see writer.py: a thread would read
it half-updated and report violations that are not there), in slices: the figures of the
books (tranches, conservation, windows: a few hundred objects, and they must be read at
one moment) in one step, then persons and redemptions ``SLICE_ITEMS`` at a time with a
pause between slices, so a ledger of a million redemptions never stalls grants for more
than one slice (measured: docs/EVENTS.md). Persons and redemptions are checked one by one
(each one's own figures), so checking them at slightly different moments is sound.

The checks are the parts ``core.invariants.check_invariants`` is made of (money,
persons, windows, redemptions), called on each slice: no second copy of the rules.

One event per distinct failure: a violation already announced is not announced again
while it lasts (its text with the figures blanked is its identity: a conservation
failure's figures change with every grant). Announcements made by the audit endpoint
count too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from lijian.core.invariants import (
    change_problems,
    money_problems,
    person_problems,
    redemption_problems,
    window_problems,
)
from lijian.core.ledger import Ledger
from lijian.events.outbox import Outbox

# Every 5 minutes by default: a ledger that breaks is a bug to stop at once, and five
# minutes is well inside the time anyone could act on it, while a full check of a
# million redemptions costs ~1 s of loop time in slices (docs/EVENTS.md), i.e. ~0.3 % of
# one core. A day close needs no audit of its own: it comes at most 5 minutes later.
# Not a settings key (the settings file is a fixed contract): an environment variable.
EVERY_S_ENV = "LIJIAN_AUDIT_EVERY_S"
EVERY_S_DEFAULT = 300.0
EVERY_S_MAX = 86_400.0
SLICE_ITEMS = 5_000  # persons or redemptions checked per step (~5 ms of loop time)
SLICE_PAUSE_S = 0.002  # between slices: requests run meanwhile
ANNOUNCED_MAX = 10_000  # distinct violations remembered; beyond: announced again, never lost
_FIGURES = re.compile(r"-?\d+")


def audit_every_s(env: dict[str, str] | os._Environ[str] = os.environ) -> float:
    """The period from ``LIJIAN_AUDIT_EVERY_S`` (0 = off); ValueError naming it if bad."""
    text = env.get(EVERY_S_ENV, "").strip()
    if not text:
        return EVERY_S_DEFAULT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= EVERY_S_MAX:  # also NaN
        raise ValueError(
            f"{EVERY_S_ENV} must be seconds between 0 (off) and {EVERY_S_MAX:.0f}: {text!r}"
        )
    return value


T = TypeVar("T")


def _slices(items: list[T]) -> Iterable[list[T]]:
    for i in range(0, len(items), SLICE_ITEMS):
        yield items[i : i + SLICE_ITEMS]


async def sliced_violations(ledger: Callable[[], Ledger], pause_s: float) -> dict[str, list[str]]:
    """Every invariant violation of the ledger, by campaign, checked in slices."""
    led = ledger()
    out: dict[str, list[str]] = {}
    for cid, b in led.books.items():  # one step: these figures belong together
        out[cid] = money_problems(b) + window_problems(b) + change_problems(led, cid)
    for cid in list(out):
        b = led.books[cid]
        cap_fen = b.settings.limits.person_savings_cap_fen
        # The objects, not their keys: one list of references, taken in one step; an
        # object changed later is checked as it is when its slice comes.
        for persons in _slices(list(b.persons.values())):
            await asyncio.sleep(pause_s)
            out[cid] += person_problems(cid, cap_fen, persons)
    for redemptions in _slices(list(led.redemptions.values())):
        await asyncio.sleep(pause_s)
        for r in redemptions:
            if problems := redemption_problems(r):
                out.setdefault(r.campaign_id, []).extend(problems)
    return out


def identity(violation: str) -> str:
    """A violation without its figures: the same failure, whatever the amounts now."""
    where, sep, what = violation.partition(": ")
    return where + sep + _FIGURES.sub("#", what)


class PeriodicAudit:
    """The audit task of one engine (on its loop): ``start``, ``stop``, and ``report``
    for violations found elsewhere (the audit endpoint)."""

    def __init__(
        self, ledger: Callable[[], Ledger], outbox: Outbox, now_ms: Callable[[], int],
        every_s: float,
    ) -> None:  # fmt: skip
        self.ledger = ledger
        self.outbox = outbox
        self.now_ms = now_ms
        self.every_s = every_s
        self.runs = 0  # completed audits (metrics, tests)
        self.announced: dict[str, set[str]] = {}  # campaign → identities announced
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lijian-audit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.run_once()

    async def run_once(self) -> None:
        found = await sliced_violations(self.ledger, SLICE_PAUSE_S)
        for cid, problems in found.items():
            self.report(cid, problems, forget_gone=True)
        self.runs += 1

    def report(self, campaign_id: str, problems: list[str], forget_gone: bool = False) -> bool:
        """Announce the violations not announced yet (True if an event was recorded).
        ``forget_gone``: this was a full check, so a violation no longer found is
        forgotten (announced again if it comes back)."""
        seen = self.announced.setdefault(campaign_id, set())
        now = {identity(p): p for p in problems}
        new = [p for key, p in now.items() if key not in seen]
        if forget_gone:
            seen.intersection_update(now)
        if not new:
            return False
        if len(seen) + len(new) <= ANNOUNCED_MAX:
            seen.update(identity(p) for p in new)
        self.outbox.audit_failed(campaign_id, new, self.now_ms())
        return True
