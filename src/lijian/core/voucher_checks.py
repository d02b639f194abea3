"""The claimed vouchers' invariants (lijian.core.invariants lists them with the rest).

- Each tranche's ``voucher_fen`` is the open value of the vouchers whose money sits
  there (claimed: all of it; held: all but the discount its hold took). With the
  tranche's flows (checked in lijian.core.invariants) this is Σ open voucher value +
  granted + held ≤ released.
- A voucher is used at most once: one redemption per voucher, one voucher per
  redemption, a discount never above its value.
- Status and money agree: a held voucher's order is held, a used one's captured; a used
  voucher gave back value − discount, an expired one its whole value, after valid_until.
"""

from __future__ import annotations

from typing import Protocol

from lijian.core.book import Book
from lijian.core.redemption import Redemption
from lijian.core.status import SETTLED, RedemptionStatus, VoucherStatus
from lijian.core.vouchers import Voucher, Vouchers

S = VoucherStatus


class _Ledger(Protocol):  # what is read: lijian.core.ledger.Ledger
    @property
    def books(self) -> dict[str, Book]: ...
    @property
    def redemptions(self) -> dict[str, Redemption]: ...
    @property
    def vouchers(self) -> Vouchers: ...


def open_value_fen(v: Voucher) -> int:
    """What of a voucher's value is still in its tranche's ``voucher_fen``."""
    if v.status == S.CLAIMED:
        return v.value_fen
    if v.status == S.HELD:
        return v.value_fen - v.discount_fen
    return 0


def voucher_problems(ledger: _Ledger) -> list[str]:
    vs = ledger.vouchers
    out: list[str] = list(vs.problems)  # lotteries whose winners are not the draw's
    sitting: dict[tuple[str, str], int] = {}
    paid_by: dict[str, str] = {}
    for v in vs.by_id.values():
        where = f"voucher {v.id}"
        b = ledger.books.get(v.campaign_id)
        if b is None or v.money_day not in b.tranches:
            out.append(f"{where}: no tranche {v.money_day} of campaign {v.campaign_id}")
            continue
        key = (v.campaign_id, v.money_day)
        sitting[key] = sitting.get(key, 0) + open_value_fen(v)
        if not 0 <= v.discount_fen <= v.value_fen:
            out.append(f"{where}: discount {v.discount_fen} outside 0..{v.value_fen}")
        r = ledger.redemptions.get(v.redemption_id) if v.redemption_id else None
        if v.status in (S.HELD, S.USED):
            if r is None:
                out.append(f"{where}: {v.status} without its redemption")
            elif r.discount_fen != v.discount_fen or r.campaign_id != v.campaign_id:
                out.append(f"{where}: its redemption {r.id} took another discount")
            elif v.status == S.HELD and r.status != RedemptionStatus.HELD:
                out.append(f"{where}: held, its redemption is {r.status}")
            elif v.status == S.USED and r.status not in SETTLED:
                out.append(f"{where}: used, its redemption is {r.status}")
            elif v.redemption_id in paid_by:
                out.append(f"{where}: redemption {r.id} also paid with {paid_by[r.id]}")
            else:
                paid_by[r.id] = v.id
        given_back = {S.USED: v.value_fen - v.discount_fen, S.EXPIRED: v.value_fen}
        if v.returned_fen != given_back.get(v.status, 0):
            out.append(f"{where}: {v.status} gave back {v.returned_fen} fen")
        if v.status == S.EXPIRED and (v.ended_ms or 0) < v.valid_until_ms:
            out.append(f"{where}: expired before its valid_until")
    for rid, vid in vs.by_redemption.items():
        if paid_by.get(rid, vid) != vid:
            out.append(f"redemption {rid}: indexed with voucher {vid}, paid with {paid_by[rid]}")
    for b in ledger.books.values():
        for t in b.tranches.values():
            want = sitting.get((b.id, t.day), 0)
            if t.voucher_fen != want:
                out.append(
                    f"{b.id} tranche {t.day}: voucher_fen {t.voucher_fen} != open value "
                    f"of its vouchers {want}"
                )
    return out
