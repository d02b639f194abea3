"""A bundle's shape (for ``verify``: typed, so that crafted input is one failure and
never an exception) and the facts of a day read from its entries.

Two formats are read: ``lijian-evidence/3``, which the builder writes, and
``lijian-evidence/2`` (``BundleV2``), which it wrote before /3 added the vouchers,
lotteries, items and risk rows: a bundle is a signed document handed to auditors, and one
issued before an upgrade must still verify. A /2 bundle is read exactly as /2 was (no
/3 field is allowed in it) and then held as a ``Bundle`` whose /3 lists are empty;
``verify`` does not check those lists for it (``is_v2``).

The facts are what the chain says happened: each capture and refund in the range, with
the figures of its redemption's hold (from the range's own ``HoldPlaced`` entries, or,
for a hold placed before the range, the ``holds`` the bundle quotes: those are bound to
the head of the day they were placed, checked with that day's bundle as ``--previous``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from lijian.core.entries import (
    CHANGE_ENTRIES,
    AnyEntry,
    HoldCaptured,
    HoldPlaced,
    RefundRecorded,
    TrancheClosed,
    decode,
)
from lijian.core.views import iso


class _S(msgspec.Struct, forbid_unknown_fields=True):
    pass


class RedemptionRow(_S):
    id: str
    person_id: str
    platform: str
    order_id: str
    payable_fen: int
    discount_fen: int
    captured_at: str


class RefundRow(_S):
    redemption_id: str
    refund_id: str
    platform: str
    kind: str
    card_refund_fen: int
    clawback_fen: int
    created_at: str


class Totals(_S):
    count: int
    gmv_fen: int
    discount_fen: int
    clawback_fen: int
    net_subsidy_fen: int


class PlatformRow(Totals):
    platform: str


class SettlementDoc(_S):
    campaign_id: str
    date: str
    platforms: list[PlatformRow]
    totals: Totals


class ChainDoc(_S):
    from_seq: int
    from_head: str
    to_seq: int
    head: str


class SignatureDoc(_S):
    alg: str
    public_key: str
    value: str


class VoucherCampaign(_S):
    voucher_id: str
    campaign_id: str


class Bundle(_S):
    format: str
    campaign_id: str
    date: str
    time_zone: str
    settlement: SettlementDoc
    redemptions: list[RedemptionRow]
    refunds: list[RefundRow]
    chain: ChainDoc
    entries: list[str]  # hex of each entry's stored body, from_seq (exclusive) to to_seq
    holds: list[str]  # hex of HoldPlaced bodies from before the range that rows need
    # The range's other state changes (lijian.evidence.range_rows), each with "entry".
    vouchers: list[dict[str, object]]
    lotteries: list[dict[str, object]]
    items: list[dict[str, object]]
    risk: list[dict[str, object]]
    voucher_campaigns: list[VoucherCampaign]
    signature: SignatureDoc
    # Operators' changes of the day (lijian.evidence.bundle.day_changes), each with its
    # "id" and "at"; bundles from before them have none.
    changes: list[dict[str, object]] = msgspec.field(default_factory=list)


FORMAT_2 = "lijian-evidence/2"
# The fields lijian-evidence/3 added to /2: a /2 bundle carrying one is refused.
V3_ONLY = ("vouchers", "lotteries", "items", "risk", "voucher_campaigns")


class BundleV2(_S):
    """A lijian-evidence/2 bundle exactly as /2 wrote it (git 4dea2a7's ``Bundle``)."""

    format: str
    campaign_id: str
    date: str
    time_zone: str
    settlement: SettlementDoc
    redemptions: list[RedemptionRow]
    refunds: list[RefundRow]
    chain: ChainDoc
    entries: list[str]
    holds: list[str]
    signature: SignatureDoc
    changes: list[dict[str, object]] = msgspec.field(default_factory=list)


def from_v2(b: BundleV2) -> Bundle:
    """The /2 bundle as a ``Bundle`` with empty /3 lists (which ``verify`` skips for it)."""
    fields = {k: getattr(b, k) for k in b.__struct_fields__}
    return Bundle(**fields, vouchers=[], lotteries=[], items=[], risk=[], voucher_campaigns=[])


def is_v2(b: Bundle) -> bool:
    return b.format == FORMAT_2


Row = dict[str, object]


@dataclass
class DayFacts:
    """What the entries say about the bundle's campaign (``dated`` picks one day)."""

    campaign_id: str
    tz: ZoneInfo
    close_ms: int
    holds: dict[str, HoldPlaced]  # every hold known: the range's and the quoted ones
    quoted_holds: dict[str, HoldPlaced]
    captures: list[HoldCaptured]
    refund_entries: list[RefundRecorded]
    redemptions: dict[str, Row] = field(default_factory=dict)  # of the bundle's date
    refunds: dict[tuple[str, str], Row] = field(default_factory=dict)
    in_range: set[str] = field(default_factory=set)  # redemptions captured in the range
    refunds_in_range: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)  # the range's: change id → ts_ms
    entries: list[AnyEntry] = field(default_factory=list)  # the range's, decoded

    def dated(self, day: str) -> DayFacts:
        """The campaign's captures and refunds of the range dated ``day`` (local)."""
        out = DayFacts(self.campaign_id, self.tz, self.close_ms, self.holds,
                       self.quoted_holds, self.captures, self.refund_entries)  # fmt: skip
        local = self.tz
        for e in self.captures:
            h = self.holds.get(e.redemption_id)
            if h is None:
                out.problems.append(f"the hold of {e.redemption_id} is not given")
                continue
            if h.campaign_id != self.campaign_id:
                continue
            out.in_range.add(h.redemption_id)
            if local_day(e.ts_ms, local) == day:
                out.redemptions[h.redemption_id] = {
                    "id": h.redemption_id, "person_id": h.person_id, "platform": h.platform,
                    "order_id": h.order_id, "payable_fen": h.payable_fen,
                    "discount_fen": h.discount_fen, "captured_at": iso(e.ts_ms, local),
                }  # fmt: skip
        for f in self.refund_entries:
            h = self.holds.get(f.redemption_id)
            if h is None:
                out.problems.append(f"the hold of {f.redemption_id} is not given")
                continue
            if h.campaign_id != self.campaign_id:
                continue
            k = (f.redemption_id, f.refund_id)
            out.refunds_in_range.add(k)
            if local_day(f.ts_ms, local) == day:
                out.refunds[k] = {
                    "redemption_id": f.redemption_id, "refund_id": f.refund_id,
                    "platform": h.platform, "kind": str(f.kind),
                    "card_refund_fen": f.card_refund_fen, "clawback_fen": f.clawback_fen,
                    "created_at": iso(f.ts_ms, local),
                }  # fmt: skip
        return out


def local_day(ts_ms: int, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz).date().isoformat()


def facts_of(b: Bundle, bodies: list[bytes]) -> tuple[DayFacts | None, str]:
    """The day's facts from the range's entry bodies (already checked against the
    heads) and the quoted holds; or the problem that stops reading them."""
    try:
        tz = ZoneInfo(b.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None, f"time_zone {b.time_zone[:40]!r} is not a known zone"
    try:
        entries: list[AnyEntry] = [decode(x) for x in bodies]
        quoted = [decode(bytes.fromhex(x)) for x in b.holds]
    except (msgspec.DecodeError, ValueError) as exc:
        return None, f"an entry cannot be read ({exc})"
    last = entries[-1]
    if not (
        isinstance(last, TrancheClosed) and last.campaign_id == b.campaign_id and last.day == b.date
    ):
        return None, f"the entries do not end at the close of {b.campaign_id} {b.date}"
    holds = {e.redemption_id: e for e in entries if isinstance(e, HoldPlaced)}
    quoted_holds: dict[str, HoldPlaced] = {}
    for q in quoted:
        if not isinstance(q, HoldPlaced):
            return None, "a quoted hold is not a hold"
        quoted_holds[q.redemption_id] = q
        holds.setdefault(q.redemption_id, q)
    captures = [e for e in entries if isinstance(e, HoldCaptured)]
    refunds = [e for e in entries if isinstance(e, RefundRecorded)]
    base = DayFacts(b.campaign_id, tz, last.ts_ms, holds, quoted_holds, captures, refunds)
    out = base.dated(b.date)
    out.entries = entries
    out.changes = {
        e.change_id: e.ts_ms
        for e in entries
        if isinstance(e, CHANGE_ENTRIES) and e.campaign_id == b.campaign_id
    }
    return out, ""
