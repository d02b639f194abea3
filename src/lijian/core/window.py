"""The admission window's decision and its check on replay.

The engine holds the requests of a window open (``lijian.release``); when the window
ends it hands them to ``Ledger.decide_window`` in arrival order, as one writer command.
The decision, in one batch:

1. records every arrival's identifiers (``IdentifiersSeen``, so the draw sees the groups
   the window's requests make: fifty accounts on one card are one person key);
2. places the holds in the draw's order (``lijian.core.draw``), each through the same
   ``Ledger.hold`` as any redemption, at the decision time (so a hold's TTL runs from
   the decision, not from the arrival): ``Ledger.decide_window``, with the decisions;
3. emits ``WindowDecided`` with the arrivals (client, key, person) in arrival order.

Applying ``WindowDecided`` (live and on every replay, so ``lijian audit`` does it too)
recomputes the order from the revealed seed (``DrawRevealed``, checked against the
commitment stored before the open) and the stored arrivals and compares it with
the holds the decision placed: their redemption ids are a gap-free sequence, so their
order is the order they were granted. A grant out of the draw's order is kept as a
problem that ``check_invariants`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from lijian.core.book import Book, WindowRecord
from lijian.core.draw import draw_order, out_of_order
from lijian.core.entries import WindowDecided
from lijian.core.order import Order
from lijian.core.pair_index import KeyIndex
from lijian.core.redemption import Redemption
from lijian.core.rules import Evaluation
from lijian.core.status import KeyUse


@dataclass(slots=True, frozen=True)
class Arrival:
    order: Order
    evaluation: Evaluation
    client_id: str
    idempotency_key: str
    fingerprint: str


def windowed(b: Book, day: str) -> bool:
    """The day has an admission window: its draw was committed before the tranche opened
    (a commitment stored later, for a campaign added mid-day, gives no window)."""
    d = b.draws.get(day)
    return d is not None and d.committed_ms < b.tranches[day].opens_at_ms


def seed_of(b: Book, day: str) -> str | None:
    """The day's seed once revealed, for a day with a window (else None)."""
    d = b.draws.get(day)
    if d is None or not windowed(b, day):
        return None
    return d.seed


def window_ends_ms(b: Book, day: str) -> int:
    """When the day's seed is revealed: the admission window's end, or for a lottery of
    claimed vouchers ([claims] allocation = "lottery") the end of its registrations."""
    c = b.settings.claims
    if c.allocation == "lottery":  # claim_open (default daily_open), then the registrations
        t = b.tranches[day]
        after_open_min = 0 if c.claim_open_min is None else (
            c.claim_open_min - b.settings.campaign.daily_open_min)  # fmt: skip
        return t.opens_at_ms + after_open_min * 60_000 + c.lottery_register_s * 1000
    return b.tranches[day].opens_at_ms + b.settings.release.admission_window_s * 1000


def draw_view(b: Book, day: str, now_ms: int) -> dict[str, object] | None:
    """``today.draw`` of the public feed: the commitment, and the seed once the window
    has ended and the seed is revealed (None without a window that day)."""
    window_s = b.settings.release.admission_window_s
    if b.settings.claims.allocation == "lottery":  # its registrations are the window
        window_s = b.settings.claims.lottery_register_s
    if not windowed(b, day) or window_s <= 0:
        return None
    d = b.draws[day]
    rec = b.windows.get(day)
    return {
        "commitment": d.commitment,
        "seed": d.seed if now_ms >= window_ends_ms(b, day) else None,
        "window_s": window_s,
        "arrivals": rec.arrivals if rec else None,
        "granted": rec.granted if rec else None,
    }


def check_window(
    b: Book,
    idempotency: KeyIndex,
    redemptions: dict[str, Redemption],
    e: WindowDecided,
) -> WindowRecord:
    """Recompute the window's order from the stored seed and arrivals; compare it with
    the holds placed at the decision (called by ``LedgerState.apply``, with its book
    and indexes: this module needs no ledger, so the ledger can import it)."""
    seed = seed_of(b, e.day)
    problems: list[str] = []
    if seed is None:
        problems.append(
            f"window {e.campaign_id}/{e.day} decided without a seed committed in time and revealed"
        )
        return WindowRecord(e.day, e.ts_ms, len(e.arrivals), 0, 0, problems)
    keys = [b.identity.find(pid) for _, _, pid in e.arrivals]
    drawn = [e.arrivals[i] for i in draw_order(seed, e.campaign_id, e.day, keys)]
    drawn_ids = [f"{c}/{k}" for c, k, _ in drawn]
    granted: list[tuple[str, str]] = []
    for c, k, _ in e.arrivals:
        seen = idempotency.get((c, k))
        if seen is None or seen[0] != KeyUse.HOLD:
            continue
        r = redemptions[seen[1]]
        if r.created_ms == e.ts_ms and r.day == e.day:
            granted.append((r.id, f"{c}/{k}"))
    granted.sort()  # redemption ids are a gap-free fixed-width sequence: grant order
    problems += out_of_order(drawn_ids, [rid for _, rid in granted])
    return WindowRecord(e.day, e.ts_ms, len(e.arrivals), len(set(keys)), len(granted), problems)
