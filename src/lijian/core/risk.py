"""Risk flags: patterns of fraud the ledger saw, kept for an operator to review.

A flag is a ledger entry (``RiskFlagged``) decided by the writer in the batch of what
raised it, so it is replayed, audited, in the hash chain and in the day's evidence
bundle. Flags move no money: the state here is only their index by campaign day. What
each detector can and cannot see is in docs/RISK.md.
"""

from __future__ import annotations

from lijian.core.entries import FlagReviewed, RiskFlagged
from lijian.core.status import FlagCode

FLAGS_PAGE_MAX = 500  # one read of a day's flags (GET …/risk): the rest by ``after``
FLAGS_PAGE_DEFAULT = 100


class RiskFlags:
    """Every flag of the ledger, by (campaign, day) in the order they were raised."""

    def __init__(self) -> None:
        self.by_day: dict[tuple[str, str], list[RiskFlagged]] = {}
        self.count = 0
        self.by_id: dict[str, RiskFlagged] = {}
        self.reviews: dict[str, FlagReviewed] = {}  # flag id → its review (once)
        # campaign → ids of flags not reviewed yet, in the order raised (the queue)
        self.open: dict[str, dict[str, None]] = {}

    def apply(self, e: RiskFlagged) -> None:
        self.count += 1
        assert e.flag_id == flag_id(self.count), "flag ids are the ledger's flag count"
        self.by_day.setdefault((e.campaign_id, e.day), []).append(e)
        self.by_id[e.flag_id] = e
        self.open.setdefault(e.campaign_id, {})[e.flag_id] = None

    def review(self, e: FlagReviewed) -> None:
        f = self.by_id.get(e.flag_id)
        assert f is not None and f.campaign_id == e.campaign_id, "a review names its flag"
        assert e.flag_id not in self.reviews, "a flag is reviewed once"
        self.reviews[e.flag_id] = e
        del self.open[e.campaign_id][e.flag_id]

    def open_page(self, campaign_id: str, after: int, limit: int) -> list[RiskFlagged]:
        """The review queue: flags not reviewed yet, oldest first, after the first ``after``."""
        assert 0 < limit <= FLAGS_PAGE_MAX and after >= 0
        ids = list(self.open.get(campaign_id, {}))[after : after + limit]
        return [self.by_id[i] for i in ids]

    def next_id(self) -> str:
        return flag_id(self.count + 1)

    def page(self, campaign_id: str, day: str, after: int, limit: int) -> list[RiskFlagged]:
        """The day's flags after the first ``after``, at most ``limit``."""
        assert 0 < limit <= FLAGS_PAGE_MAX and after >= 0
        return self.by_day.get((campaign_id, day), [])[after : after + limit]

    def all(self) -> list[RiskFlagged]:
        """Every flag in the order raised (a snapshot's)."""
        return sorted(
            (e for es in self.by_day.values() for e in es), key=lambda e: flag_number(e.flag_id)
        )


def flag_id(n: int) -> str:
    return f"flag-{n}"


def flag_number(text: str) -> int:
    return int(text.removeprefix("flag-"))


def price_flag(
    ts_ms: int,
    campaign_id: str,
    fid: str,
    day: str,
    person_id: str,
    redemption_id: str,
    over: list[tuple[str, int, int]],
) -> RiskFlagged:
    """A grant whose items are priced above their reference ([risk] price_action "flag"):
    ``over`` is (sku, unit_price_fen, reference_price_fen) of each such item."""
    assert over, "a price flag names at least one item"
    figures = [
        f for sku, unit, ref in over
        for f in ((sku, "unit_price_fen", unit), (sku, "reference_price_fen", ref))
    ]  # fmt: skip
    return RiskFlagged(
        ts_ms, campaign_id, fid, day, FlagCode.PRICE_ABOVE_REFERENCE, [person_id],
        [redemption_id], figures,
    )  # fmt: skip


def review_view(e: FlagReviewed) -> dict[str, object]:
    """A flag's review as the API shows it (its time is added by the caller)."""
    return {"flag_id": e.flag_id, "action": e.action.value, "reason": e.reason,
            "operator": e.operator, "block_id": e.block_id}  # fmt: skip


def flag_view(e: RiskFlagged) -> dict[str, object]:
    """A flag as the API lists it (times are added by the caller, in campaign time)."""
    return {
        "id": e.flag_id,
        "code": e.code.value,
        "day": e.day,
        "person_ids": list(e.person_ids),
        "redemption_ids": list(e.redemption_ids),
        "figures": [{"subject": s, "figure": f, "value": v} for s, f, v in e.figures],
    }
