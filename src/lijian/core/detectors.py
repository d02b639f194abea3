"""Detectors over the ledger: shared identities, refund then rebuy, velocity, bulk buying.

Why on the writer, at the grant: a flag is then decided in the batch of the grant that
raised it, from the state every replay rebuilds, so it is acknowledged with the grant,
replayed and audited like any entry, and nothing scans the ledger afterwards. The cost
per grant is bounded: each detector reads and updates one small index of the grant's own
person, group, keyed address or device, or category (every index below is capped), never
a scan over persons. What each detector can and cannot see is in docs/RISK.md.

Decisions (``after_grant``) run in ``Ledger.hold`` right after the ``HoldPlaced``; the
indices change only in ``RiskIndex.apply_*``, which ``LedgerState.apply`` calls for
``HoldPlaced``, ``RefundRecorded``, ``RiskNoted`` and ``RiskFlagged``: live and on replay
alike. A flag consumes its evidence (the refund, the burst of redemptions, the
crossing of an address), so the same evidence never raises a flag twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from lijian.core.entries import AnyEntry, HoldPlaced, RefundRecorded, RiskFlagged, RiskNoted
from lijian.core.risk_settings import DetectorSettings
from lijian.core.status import FlagCode

if TYPE_CHECKING:
    from lijian.core.book import Book
    from lijian.core.order import Order
    from lijian.core.redemption import Redemption
    from lijian.core.risk import RiskFlags

CLUSTER_PERSONS_KEPT = 64  # persons remembered per address or device (flags stop there)
KEYS_PER_PERSON_MAX = 16  # addresses and devices remembered per person
REFUNDS_KEPT = 32  # refunded SKUs remembered per person or group (oldest dropped)
CATEGORY_REDEMPTIONS_KEPT = 16  # redemptions a category_bulk flag names, the latest
HISTOGRAM_BUCKETS = 256  # quarter-octave buckets of fen: 2**62 fits
DAY_MS = 86_400_000


class CampaignRisk(msgspec.Struct, array_like=True):
    """One campaign's indices (kept whole in snapshots)."""

    # "kind:keyed value" → [(person, its redemption)], at most CLUSTER_PERSONS_KEPT
    sharers: dict[str, list[tuple[str, str]]] = msgspec.field(default_factory=dict)
    cluster_named: dict[str, int] = msgspec.field(default_factory=dict)  # key → named
    person_keys: dict[str, list[str]] = msgspec.field(default_factory=dict)
    # subject (person, or group root) → [(sku, refunded at ms, redemption)]
    refunds: dict[str, list[tuple[str, int, str]]] = msgspec.field(default_factory=dict)
    # subject → [(granted at ms, redemption, person)], at most velocity N + 1
    recent: dict[str, list[tuple[int, str, str]]] = msgspec.field(default_factory=dict)
    # category → person → payable fen; category → histogram of those totals
    spend: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    histogram: dict[str, list[int]] = msgspec.field(default_factory=dict)
    # "person\ncategory" → latest redemptions; "person\ncategory" flagged once
    bought: dict[str, list[str]] = msgspec.field(default_factory=dict)
    bulk_flagged: list[str] = msgspec.field(default_factory=list)


class RiskIndex:
    """The detectors' state of every campaign, changed only by ``apply``."""

    def __init__(self) -> None:
        self.campaigns: dict[str, CampaignRisk] = {}
        self._bulk_flagged: dict[str, set[str]] = {}

    def of(self, cid: str) -> CampaignRisk:
        c = self.campaigns.get(cid)
        if c is None:
            c = self.campaigns[cid] = CampaignRisk()
        return c

    def restore(self, state: dict[str, CampaignRisk]) -> None:
        self.campaigns = state
        self._bulk_flagged = {cid: set(c.bulk_flagged) for cid, c in state.items()}

    def apply(self, b: Book, e: AnyEntry) -> None:
        d = b.settings.risk.detectors
        if not d.on:
            return
        c = self.of(b.id)
        if isinstance(e, HoldPlaced):
            if d.velocity_redemptions_max is not None:
                _note_recent(c, d, subject(b, e.person_id), e)
        elif isinstance(e, RefundRecorded):
            return  # applied by apply_refund (it needs the redemption)
        elif isinstance(e, RiskNoted):
            _note(c, e)
        elif isinstance(e, RiskFlagged):
            self._consume(b, c, e)

    def apply_refund(self, b: Book, e: RefundRecorded, person_id: str, skus: list[str]) -> None:
        """A refund of ``skus`` of one of ``person_id``'s redemptions."""
        if b.settings.risk.detectors.refund_rebuy_days is None:
            return
        kept = self.of(b.id).refunds.setdefault(subject(b, person_id), [])
        for sku in skus:
            kept[:] = [k for k in kept if k[0] != sku]
            kept.append((sku, e.ts_ms, e.redemption_id))
        del kept[:-REFUNDS_KEPT]

    def _consume(self, b: Book, c: CampaignRisk, e: RiskFlagged) -> None:
        """A flag's evidence is used up: it never raises the same flag again."""
        if e.code == FlagCode.SHARED_IDENTITY_CLUSTER:
            key = e.figures[0][0]
            c.cluster_named[key] = len(c.sharers[key])
        elif e.code == FlagCode.REFUND_REBUY:
            kept = c.refunds.get(subject(b, e.person_ids[0]), [])
            done = {s for s, _, _ in e.figures}
            kept[:] = [k for k in kept if k[0] not in done]
        elif e.code == FlagCode.VELOCITY:
            c.recent.pop(e.figures[0][0], None)
        elif e.code == FlagCode.CATEGORY_BULK:
            key = f"{e.person_ids[0]}\n{e.figures[0][0]}"
            c.bulk_flagged.append(key)
            self._bulk_flagged.setdefault(b.id, set()).add(key)

    def bulk_flagged(self, cid: str, key: str) -> bool:
        return key in self._bulk_flagged.get(cid, ())


class Ledger(Protocol):
    """What the detectors' decisions use of the deciding ledger (lijian.core.ledger),
    named here so that this module does not import it (the ledger imports this one)."""

    redemptions: dict[str, Redemption]
    detectors: RiskIndex
    risk: RiskFlags
    now_ms: int

    def emit(self, entry: AnyEntry) -> None: ...


def subject(b: Book, person_id: str) -> str:
    """Whom velocity and refund_rebuy count: the person's linked group ([identity]), named
    by its root person, or the person alone."""
    return b.identity.find(person_id) if b.settings.identity.link_by else person_id


def _note_recent(c: CampaignRisk, d: DetectorSettings, who: str, e: HoldPlaced) -> None:
    assert d.velocity_redemptions_max is not None and d.velocity_window_min is not None
    since = e.ts_ms - d.velocity_window_min * 60_000
    kept = [r for r in c.recent.get(who, []) if r[0] > since]
    kept.append((e.ts_ms, e.redemption_id, e.person_id))
    c.recent[who] = kept[-(d.velocity_redemptions_max + 1) :]


def _note(c: CampaignRisk, e: RiskNoted) -> None:
    keys = c.person_keys.setdefault(e.person_id, [])
    for kind, value in e.keys:
        key = f"{kind}:{value}"
        if key in keys or len(keys) >= KEYS_PER_PERSON_MAX:
            continue
        keys.append(key)
        persons = c.sharers.setdefault(key, [])
        if len(persons) < CLUSTER_PERSONS_KEPT:
            persons.append((e.person_id, e.redemption_id))
    for cat, fen in e.categories:
        spend = c.spend.setdefault(cat, {})
        hist = c.histogram.setdefault(cat, [0] * HISTOGRAM_BUCKETS)
        old = spend.get(e.person_id, 0)
        if old:
            hist[bucket(old)] -= 1
        spend[e.person_id] = old + fen
        hist[bucket(old + fen)] += 1
        got = c.bought.setdefault(f"{e.person_id}\n{cat}", [])
        got.append(e.redemption_id)
        del got[:-CATEGORY_REDEMPTIONS_KEPT]


def bucket(fen: int) -> int:
    """A quarter-octave bucket of a positive amount: 1, 2, 3 exactly, then the top three
    bits (4 buckets per power of two), so a median is read in at most 256 steps."""
    assert fen > 0
    e = fen.bit_length() - 1
    return fen if e < 2 else 4 * e + (fen >> (e - 2)) - 4


def bucket_floor(b: int) -> int:
    """The least amount of bucket ``b`` (the inverse of ``bucket`` at its lower edge)."""
    if b < 4:
        return b
    e, top = b // 4, b % 4 + 4
    return top << (e - 2)


def median_floor(hist: list[int], persons: int) -> int:
    """The lower edge of the bucket of the lower median of ``persons`` totals."""
    rank, seen = (persons - 1) // 2, 0
    for i, n in enumerate(hist):
        seen += n
        if seen > rank:
            return bucket_floor(i)
    raise AssertionError("the histogram counts every person")


def after_grant(
    led: Ledger, b: Book, order: Order, rid: str, categories: list[tuple[str, int]]
) -> None:
    """The detectors' decisions on a grant just placed (``Ledger.hold``): a RiskNoted if
    a detector needs what HoldPlaced does not carry, then any flag it raises."""
    d = b.settings.risk.detectors
    r = led.redemptions[rid]
    c = led.detectors.of(b.id)
    emit: Callable[[AnyEntry], None] = led.emit
    new_keys: list[tuple[str, str]] = []
    if d.cluster_persons_max is not None:
        have = c.person_keys.get(r.person_id, [])
        if len(have) < KEYS_PER_PERSON_MAX:
            new_keys = [(k, v) for k, v in _keys(order) if f"{k}:{v}" not in have]
    cats = categories if d.category_bulk_factor is not None else []
    if new_keys or cats:
        emit(RiskNoted(led.now_ms, b.id, r.person_id, rid, new_keys, cats))
    flag = _flagger(led, b, r.day)
    if d.cluster_persons_max is not None:
        for k, v in new_keys:
            key = f"{k}:{v}"
            persons = c.sharers.get(key, [])
            named = c.cluster_named.get(key, 0)
            if len(persons) > d.cluster_persons_max and len(persons) > named:
                fresh = persons if named == 0 else persons[named:]
                flag(FlagCode.SHARED_IDENTITY_CLUSTER, [p for p, _ in fresh],
                     [x for _, x in fresh],
                     [(key, "persons_sharing", len(persons)),
                      (key, "cluster_persons_max", d.cluster_persons_max)])  # fmt: skip
    if d.refund_rebuy_days is not None:
        _rebuy(c, d.refund_rebuy_days, subject(b, r.person_id), r.person_id, rid, r.lines,
               r.created_ms, flag)  # fmt: skip
    if d.velocity_redemptions_max is not None:
        who = subject(b, r.person_id)
        burst = c.recent.get(who, [])
        if len(burst) > d.velocity_redemptions_max:
            names = list(dict.fromkeys(p for _, _, p in burst))
            flag(FlagCode.VELOCITY, names, [x for _, x, _ in burst],
                 [(who, "redemptions", len(burst)),
                  (who, "span_s", (burst[-1][0] - burst[0][0]) // 1000),
                  (who, "velocity_window_min", d.velocity_window_min or 0)])  # fmt: skip
    if d.category_bulk_factor is not None:
        for cat, _ in cats:
            _bulk(led, c, b.id, d, cat, r.person_id, flag)


def _rebuy(
    c: CampaignRisk, days: int, who: str, person_id: str, rid: str,
    lines: Sequence[tuple[str, int, int]], now_ms: int, flag: _Flag,
) -> None:  # fmt: skip
    kept = c.refunds.get(who)
    if not kept:
        return
    skus = {sku for sku, _, _ in lines}
    hits = [k for k in kept if k[0] in skus and now_ms - k[1] <= days * DAY_MS and k[2] != rid]
    if hits:
        rids = list(dict.fromkeys([*(h[2] for h in hits), rid]))
        figures = [(sku, "seconds_since_refund", (now_ms - at) // 1000) for sku, at, _ in hits]
        flag(FlagCode.REFUND_REBUY, [person_id], rids, figures)


def _bulk(
    led: Ledger, c: CampaignRisk, cid: str, d: DetectorSettings, cat: str, person_id: str,
    flag: _Flag,
) -> None:  # fmt: skip
    assert d.category_bulk_factor is not None
    spend = c.spend[cat]
    key = f"{person_id}\n{cat}"
    if len(spend) < d.category_bulk_min_persons or led.detectors.bulk_flagged(cid, key):
        return
    median = median_floor(c.histogram[cat], len(spend))
    total = spend[person_id]
    if total > d.category_bulk_factor * median:
        flag(FlagCode.CATEGORY_BULK, [person_id], list(c.bought[key]),
             [(cat, "person_spend_fen", total), (cat, "median_per_person_fen", median),
              (cat, "category_bulk_factor", d.category_bulk_factor),
              (cat, "persons", len(spend))])  # fmt: skip


_Flag = Callable[[FlagCode, list[str], list[str], list[tuple[str, str, int]]], None]


def _flagger(led: Ledger, b: Book, day: str) -> _Flag:
    def flag(code: FlagCode, persons: list[str], rids: list[str],
             figures: list[tuple[str, str, int]]) -> None:  # fmt: skip
        led.emit(RiskFlagged(led.now_ms, b.id, led.risk.next_id(), day, code, persons, rids,
                             figures))  # fmt: skip

    return flag


def _keys(order: Order) -> list[tuple[str, str]]:
    """The grant's keyed device and delivery address text (core/keyed.py)."""
    out: list[tuple[str, str]] = []
    if order.person.device_id:
        out.append(("device_id", order.person.device_id))
    a = order.delivery_address
    if a is not None and a.text:
        out.append(("address_text", a.text))
    return out


def categories_of(
    order: Order, lines: list[tuple[str, int, int]], category_of: Callable[[str, str], str | None]
) -> list[tuple[str, int]]:
    """(category, payable fen) of an order's lines, summed per category, sorted: what
    category_bulk counts (computed with the rules, outside the writer)."""
    out: dict[str, int] = {}
    for sku, _, payable in lines:
        cat = category_of(order.platform, sku)
        if cat is not None and payable > 0:
            out[cat] = out.get(cat, 0) + payable
    return sorted(out.items())
