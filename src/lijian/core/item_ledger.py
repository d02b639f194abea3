"""Trade-in item rules, the ledger's half: subsidised units per category and person, and
the serials subsidised, kept by ``apply`` from ``ItemsSubsidised`` entries.

A hold's items count from its ``ItemsSubsidised`` entry until the hold is voided or
expires or its order is refunded in full (a partial refund keeps them: the device was
sold with the subsidy). A serial is subsidised at most once in a campaign among the
holds that count: ``apply`` asserts it (so a replay of a ledger that broke it fails),
the audit recounts it (``problems``), and the one writer decides it (``reasons``), so
racing redemptions with one serial get one hold. Counts are per person; a campaign
that links persons ([identity] link_by) counts a group's members together, as its
savings cap does (lijian.core.identity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lijian.core.book import Book
from lijian.core.entries import ItemsSubsidised
from lijian.core.order import Order
from lijian.core.redemption import Redemption
from lijian.core.rules import Evaluation, Reason, reason
from lijian.core.status import RedemptionStatus

# A hold's items stop counting when its redemption reaches one of these.
ENDED = frozenset({RedemptionStatus.VOIDED, RedemptionStatus.EXPIRED, RedemptionStatus.REFUNDED})

MembersOf = Callable[[Book, Order], list[str]]


class ItemLedger:
    """Every campaign's subsidised units and serials (the records and their indexes)."""

    def __init__(self) -> None:
        # Every ItemsSubsidised applied, by redemption id, in the order applied.
        self.records: dict[str, ItemsSubsidised] = {}
        self.live: set[str] = set()  # the records that count now
        # (campaign, person) → category → units subsidised and counting
        self.units: dict[tuple[str, str], dict[str, int]] = {}
        # (campaign, serial) → the redemption that subsidises it now
        self.serials: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ apply
    def apply(self, e: ItemsSubsidised, r: Redemption) -> None:
        assert r.status == RedemptionStatus.HELD and e.redemption_id not in self.records
        assert (r.campaign_id, r.person_id) == (e.campaign_id, e.person_id)
        self.records[e.redemption_id] = e
        self._count(e, 1)

    def ended(self, r: Redemption) -> None:
        """A redemption's status changed: its items stop counting if it has ended."""
        if r.id in self.live and r.status in ENDED:
            self._count(self.records[r.id], -1)

    def _count(self, e: ItemsSubsidised, sign: int) -> None:
        rid, key = e.redemption_id, (e.campaign_id, e.person_id)
        if sign > 0:
            self.live.add(rid)
        else:
            self.live.remove(rid)
        per = self.units.setdefault(key, {})
        for cat, n in e.units:
            per[cat] = per.get(cat, 0) + sign * n
            assert per[cat] >= 0
            if not per[cat]:
                del per[cat]
        if not per:
            del self.units[key]
        for serial in e.serials:
            skey = (e.campaign_id, serial)
            if sign > 0:
                assert skey not in self.serials, "a serial is subsidised at most once"
                self.serials[skey] = rid
            else:
                assert self.serials.pop(skey) == rid

    # -------------------------------------------------------------- decisions
    def units_of(self, campaign_id: str, persons: list[str], category: str) -> int:
        """Units of ``category`` the persons (one person, or a linked group) have now."""
        total = 0
        for pid in persons:
            per = self.units.get((campaign_id, pid))
            total += per.get(category, 0) if per else 0
        return total

    def reasons(self, b: Book, order: Order, ev: Evaluation, members_of: MembersOf) -> list[Reason]:
        """The stateful item reasons of an order (read only; the writer calls it)."""
        out: list[Reason] = []
        rules = b.settings.items
        if rules.counted and ev.units:
            persons = members_of(b, order)
            for cat, n in ev.units:
                allowed = rules.units_allowed(cat)
                if allowed and self.units_of(b.id, persons, cat) + n > allowed:
                    out.append(reason("person_category_limit"))
                    break
        if any((b.id, serial) in self.serials for serial in ev.serials):
            out.append(reason("serial_already_subsidised"))
        return out

    @staticmethod
    def entry(
        ts_ms: int, b: Book, rid: str, person_id: str, ev: Evaluation
    ) -> list[ItemsSubsidised]:
        """What a hold's items record (nothing when nothing is counted or recorded)."""
        units = list(ev.units) if b.settings.items.counted else []
        if not units and not ev.serials:
            return []
        return [ItemsSubsidised(ts_ms, b.id, rid, person_id, units, list(ev.serials))]

    # ------------------------------------------------------- snapshot, audit
    def to_state(self) -> list[ItemsSubsidised]:
        return list(self.records.values())

    def restore(self, records: list[ItemsSubsidised], reds: Mapping[str, Redemption]) -> None:
        """A snapshot's records again, in the order applied: each counts, then stops if its
        redemption has ended (a later record may reuse its serial)."""
        for e in records:
            r = reds[e.redemption_id]
            self.records[e.redemption_id] = e
            self._count(e, 1)
            self.ended(r)

    def problems(self, reds: Mapping[str, Redemption]) -> list[str]:
        """The audit: recount units and serials from the records and their redemptions'
        statuses; a serial counted by two redemptions at once is a violation."""
        out: list[str] = []
        units: dict[tuple[str, str], dict[str, int]] = {}
        serials: dict[tuple[str, str], str] = {}
        for rid, e in self.records.items():
            r = reds.get(rid)
            if r is None or (r.campaign_id, r.person_id) != (e.campaign_id, e.person_id):
                out.append(
                    f"items of {rid}: no such redemption of {e.person_id} in {e.campaign_id}"
                )
                continue
            if (r.status not in ENDED) != (rid in self.live):
                out.append(f"items of {rid}: counted is not what its status {r.status} says")
            if r.status in ENDED:
                continue
            per = units.setdefault((e.campaign_id, e.person_id), {})
            for cat, n in e.units:
                per[cat] = per.get(cat, 0) + n
            for serial in e.serials:
                other = serials.setdefault((e.campaign_id, serial), rid)
                if other != rid:
                    out.append(
                        f"serial {serial!r} of {e.campaign_id} subsidised twice: {other}, {rid}"
                    )
        if {k: v for k, v in units.items() if v} != self.units:
            out.append("units per category and person differ from the redemptions' items")
        if serials != self.serials:
            out.append("the serials subsidised differ from the redemptions' items")
        return out
