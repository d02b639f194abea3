"""The bundle's rows of the range's other state changes: vouchers, lottery draws,
trade-in items and risk flags, read straight from the entries of the range.

Unlike redemptions and refunds (dated by their local day), these rows are *every* such
entry of the campaign in the bundle's range, from the previous day's close to this
day's close, in chain order: each entry is in exactly one bundle, and each row names its
entry by its index in the bundle's ``entries`` (``"entry"``), with its time (``"at"``,
local). ``bundle.py`` lists them and ``verify.py`` derives them again with the same
function, so a row altered, dropped or added is a difference from the entries.

Ids are as stored (person ids are keyed by the engine, the keys of ``RiskNoted`` too);
the device serials of ``ItemsSubsidised`` are counted, not listed (they are in the
entry, bound by the chain).

Which campaign a voucher's later entries (held, used, expired: they carry only the
voucher's id) are of: its claim, registration or restore when that is in the range, or
else ``voucher_campaigns``, which the bundle quotes for every such voucher (checked
against the previous day's entries by ``verify --previous``, as quoted holds are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from lijian.core.entries import (
    AnyEntry,
    DrawRevealed,
    FlagReviewed,
    ItemsSubsidised,
    LotteryDrawn,
    RiskFlagged,
    RiskNoted,
    VoucherClaimed,
    VoucherExpired,
    VoucherHeld,
    VoucherRegistered,
    VoucherRestored,
    VoucherUsed,
)
from lijian.core.views import iso

Row = dict[str, object]
# The bundle's lists of these rows, in the order the docs list them.
ROW_KEYS = ("vouchers", "lotteries", "items", "risk")
# The noun a failure names a row of each list with.
NOUNS = {"vouchers": "voucher", "lotteries": "lottery", "items": "items", "risk": "risk"}

_Origin = VoucherClaimed | VoucherRegistered | VoucherRestored
_Later = VoucherHeld | VoucherUsed | VoucherExpired


@dataclass
class RangeRows:
    """The rows of one campaign in one range, and what stopped a row being read."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {k: [] for k in ROW_KEYS})
    origins: dict[str, str] = field(default_factory=dict)  # the range's vouchers → campaign
    problems: list[str] = field(default_factory=list)


def vouchers_before(entries: Sequence[AnyEntry]) -> list[str]:
    """The vouchers held, used or expired in the range whose claim is before it (the
    bundle quotes their campaign), in the order they first appear."""
    seen: set[str] = set()
    out: list[str] = []
    for e in entries:
        if isinstance(e, _Origin):
            seen.add(e.voucher_id)
        elif isinstance(e, _Later) and e.voucher_id not in seen:
            seen.add(e.voucher_id)
            out.append(e.voucher_id)
    return out


def range_rows(
    entries: Sequence[AnyEntry], campaign_id: str, tz: ZoneInfo, quoted: Mapping[str, str]
) -> RangeRows:
    """The campaign's rows of the range (``quoted``: voucher id → campaign of the
    vouchers from before the range)."""
    out = RangeRows()
    seeds: dict[str, str] = {}  # the campaign's draws revealed in the range: day → seed
    registered: dict[str, list[list[str]]] = {}  # day → [voucher id, person id], in order
    for n, e in enumerate(entries):
        if isinstance(e, _Origin):
            out.origins[e.voucher_id] = e.campaign_id
        if isinstance(e, DrawRevealed) and e.campaign_id == campaign_id:
            seeds[e.day] = e.seed
        if isinstance(e, _Later):
            owner = out.origins.get(e.voucher_id, quoted.get(e.voucher_id))
            if owner is None:
                out.problems.append(f"the campaign of voucher {e.voucher_id} is not given")
                continue
            if owner != campaign_id:
                continue
            out.rows["vouchers"].append({"entry": n, "at": iso(e.ts_ms, tz), **_later(e)})
            continue
        if getattr(e, "campaign_id", None) != campaign_id:
            continue
        if isinstance(e, VoucherRegistered):
            registered.setdefault(e.day, []).append([e.voucher_id, e.person_id])
        row = _row(e, tz, seeds, registered)
        if row is not None:
            key, fields = row
            out.rows[key].append({"entry": n, "at": iso(e.ts_ms, tz), **fields})
    return out


def _later(e: _Later) -> Row:
    if isinstance(e, VoucherHeld):
        return {"kind": "held", "voucher_id": e.voucher_id, "redemption_id": e.redemption_id,
                "day": e.day, "discount_fen": e.discount_fen}  # fmt: skip
    if isinstance(e, VoucherUsed):
        return {"kind": "used", "voucher_id": e.voucher_id, "returned_fen": e.returned_fen,
                "to_day": e.to_day, "to_same": e.to_same}  # fmt: skip
    return {"kind": "expired", "voucher_id": e.voucher_id, "to_day": e.to_day,
            "to_same": e.to_same}  # fmt: skip


def _row(
    e: AnyEntry, tz: ZoneInfo, seeds: dict[str, str], registered: dict[str, list[list[str]]]
) -> tuple[str, Row] | None:
    """The list and fields of a campaign entry's row (None: not a row of these lists)."""
    if isinstance(e, VoucherClaimed | VoucherRegistered):
        # A registration is a claim the day's draw decides: its time is the draw's.
        if isinstance(e, VoucherClaimed):
            kind, until = "claimed", ("valid_until", e.valid_until_ms)
        else:
            kind, until = "registered", ("draw_at", e.draw_at_ms)
        return "vouchers", {
            "kind": kind, "voucher_id": e.voucher_id,
            "person_id": e.person_id, "day": e.day, "value_fen": e.value_fen,
            "category": e.category, until[0]: iso(until[1], tz),
        }  # fmt: skip
    if isinstance(e, VoucherRestored):
        return "vouchers", {
            "kind": "restored", "voucher_id": e.voucher_id,
            "from_voucher_id": e.from_voucher_id, "day": e.day, "value_fen": e.value_fen,
            "valid_until": iso(e.valid_until_ms, tz),
        }  # fmt: skip
    if isinstance(e, LotteryDrawn):
        # What an auditor recomputes the draw from (lijian.core.draw, docs/FAIRNESS.md):
        # the revealed seed (None when it is not in this range) and the registrations
        # of the range for the day, in arrival order.
        return "lotteries", {
            "day": e.day, "seed": seeds.get(e.day),
            "registrations": [list(x) for x in registered.get(e.day, [])],
            "winners": list(e.winners), "valid_until": iso(e.valid_until_ms, tz),
        }  # fmt: skip
    if isinstance(e, ItemsSubsidised):
        return "items", {
            "redemption_id": e.redemption_id, "person_id": e.person_id,
            "units": [[c, u] for c, u in e.units], "serial_count": len(e.serials),
        }  # fmt: skip
    if isinstance(e, RiskFlagged):
        return "risk", {
            "kind": "flagged", "flag_id": e.flag_id, "day": e.day, "code": str(e.code),
            "person_ids": list(e.person_ids), "redemption_ids": list(e.redemption_ids),
            "figures": [[s, f, x] for s, f, x in e.figures],
        }  # fmt: skip
    if isinstance(e, RiskNoted):
        return "risk", {
            "kind": "noted", "person_id": e.person_id, "redemption_id": e.redemption_id,
            "keys": [[k, x] for k, x in e.keys],
            "categories": [[c, f] for c, f in e.categories],
        }  # fmt: skip
    if isinstance(e, FlagReviewed):
        return "risk", {
            "kind": "reviewed", "flag_id": e.flag_id, "action": str(e.action),
            "reason": e.reason, "operator": e.operator, "block_id": e.block_id,
        }  # fmt: skip
    return None


def shown(key: str, row: Mapping[str, object]) -> str:
    """A row as a failure names it: ``voucher claimed vc_… (entry 12)``."""
    what = [NOUNS[key]]
    for k in ("kind", "voucher_id", "flag_id", "redemption_id", "day"):
        x = row.get(k)
        if isinstance(x, str):
            what.append(x[:64])
            if k != "kind":
                break
    return f"{' '.join(what)} (entry {row.get('entry')!s:.20})"
