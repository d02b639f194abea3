"""A redemption as the ledger keeps it: a packed record read through its accessors.

A city's ledger holds millions of redemptions, so the record keeps few objects of its
own (docs/PERFORMANCE.md, "Memory: bytes per redemption and per person"):

- what many redemptions share is one :class:`Where` (campaign, day, platform, client,
  the capped flag and the hold's time to live), kept once per distinct value;
- the order's payable, its discount and the request's fingerprint are one ``bytes``
  (two signed 64-bit integers, then :func:`lijian.core.fingerprint.packed`);
- an order of one unit of one SKU, whose line is the whole order (most orders), keeps
  its line as the SKU alone;
- the capture's or the end's time is one field (the status tells which), and so are,
  once refunded, the figures refunds change (a :class:`Refunded`, made at the first
  refund, keeps the capture's time with them).

Everything else reads the record through the same names as before (``campaign_id``,
``payable_fen``, ``lines``, ``captured_ms``…): properties, so no caller changes meaning.
Build one with :meth:`Redemption.new`; a snapshot encodes the packed fields as columns
(:mod:`lijian.core.redemption_columns`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from operator import attrgetter
from sys import intern

import msgspec

from lijian.core.status import HOLD_ENDED, RedemptionStatus, RefundKind

HELD = RedemptionStatus.HELD
Line = tuple[str, int, int]  # (sku, quantity, line payable fen)
_FEN = struct.Struct("<qq")  # payable, discount: the head of Redemption.sums
_FEN_BYTES = _FEN.size
_SUMS = attrgetter("sums")
_CLOSED = attrgetter("closed")
# Distinct Where values kept shared; past this many (a campaign whose holds' TTL varies
# per order, say) a record keeps its own copy rather than the table growing without end.
WHERES_MAX = 100_000


class Refund(msgspec.Struct, array_like=True, gc=False):
    refund_id: str
    ts_ms: int
    kind: RefundKind
    returned_payable_fen: int
    card_refund_fen: int
    clawback_fen: int
    quota_restore_fen: int
    quota_restore_at_ms: int | None
    fingerprint: bytes  # lijian.core.fingerprint.packed
    client_id: str
    idempotency_key: str
    # The redemption as it stood right after this refund (status, returned, card refunded,
    # clawed back, number of refunds): the 201 body is rebuilt from it, exactly, for an
    # idempotent replay even after later refunds and restarts.
    after: tuple[RedemptionStatus, int, int, int, int]

    def __post_init__(self) -> None:
        self.client_id = intern(self.client_id)


class Where(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What a redemption shares with every other of its campaign, day, platform and
    client: one object for all of them (``shared_where``)."""

    campaign_id: str
    day: str
    platform: str
    client_id: str
    capped: bool
    hold_ms: int  # expires_at_ms - created_ms: the campaign's hold TTL when it was placed


_wheres: dict[Where, Where] = {}


def shared_where(w: Where) -> Where:
    kept = _wheres.get(w)
    if kept is not None:
        return kept
    if len(_wheres) >= WHERES_MAX:
        return w
    kept = Where(
        intern(w.campaign_id), intern(w.day), intern(w.platform), intern(w.client_id),
        w.capped, w.hold_ms,
    )  # fmt: skip
    _wheres[kept] = kept
    return kept


def shared_line(lines: tuple[Line, ...], payable_fen: int) -> str | tuple[Line, ...]:
    """A record's ``line``: the SKU alone for one unit that is the whole order (most
    orders), else the lines; each SKU one shared string."""
    if len(lines) == 1 and lines[0][1] == 1 and lines[0][2] == payable_fen:
        return intern(lines[0][0])
    return interned_lines(lines)


def interned_lines(lines: tuple[Line, ...]) -> tuple[Line, ...]:
    return tuple([(intern(sku), q, lp) for sku, q, lp in lines])


class Refunded(msgspec.Struct, array_like=True, gc=False):
    """A redemption's figures that only refunds change (made at its first refund)."""

    captured_ms: int | None = None
    returned_payable_fen: int = 0
    card_refunded_fen: int = 0
    clawed_back_fen: int = 0
    returned_qty: dict[str, int] | None = None  # sku → quantity returned
    refunds: tuple[Refund, ...] = ()


_NO_REFUNDS = Refunded()  # what a record without refunds reads (never changed)
_CAPTURED_SINCE = frozenset(
    {RedemptionStatus.CAPTURED, RedemptionStatus.PARTIALLY_REFUNDED, RedemptionStatus.REFUNDED}
)


def fens(records: Iterable[Redemption]) -> Iterator[tuple[int, int]]:
    """(payable_fen, discount_fen) of each record, unpacked in C (the invariant check
    reads a million of them at every restart)."""
    return map(_FEN.unpack_from, map(_SUMS, records))


def any_refunded(records: Iterable[Redemption]) -> bool:
    """Whether a refund was recorded on any of ``records`` (``ever_refunded``), in C."""
    return Refunded in set(map(type, map(_CLOSED, records)))


class Redemption(msgspec.Struct, array_like=True, gc=False):
    """One redemption (see the module's docstring for how its fields are packed)."""

    id: str
    where: Where
    person_id: str
    order_id: str
    idempotency_key: str
    created_ms: int
    sums: bytes  # payable_fen, discount_fen ("<qq"), then the packed fingerprint
    line: str | tuple[Line, ...]  # the SKU of one unit that is the whole order, or lines
    status: RedemptionStatus = HELD
    # When it was captured (CAPTURED) or ended (VOIDED, EXPIRED); once refunded, its
    # refunds' figures with the capture's time.
    closed: int | Refunded | None = None

    @classmethod
    def new(
        cls,
        id: str,
        campaign_id: str,
        day: str,
        person_id: str,
        platform: str,
        order_id: str,
        payable_fen: int,
        discount_fen: int,
        capped: bool,
        created_ms: int,
        expires_at_ms: int,
        lines: tuple[Line, ...],
        fingerprint: bytes,
        client_id: str,
        idempotency_key: str,
    ) -> Redemption:
        """A held redemption, from what its HoldPlaced entry says: one copy of each Where
        and SKU however many redemptions name them (the entry's strings are its own, as
        its decoder made them). A snapshot's records share theirs the same way
        (``redemption_columns.from_columns``); no other code makes a record."""
        where = Where(campaign_id, day, platform, client_id, capped, expires_at_ms - created_ms)
        sums = _FEN.pack(payable_fen, discount_fen) + fingerprint
        return cls(id, shared_where(where), person_id, order_id, idempotency_key, created_ms,
                   sums, shared_line(lines, payable_fen))  # fmt: skip

    # ------------------------------------------------------------ what it shares
    @property
    def campaign_id(self) -> str:
        return self.where.campaign_id

    @campaign_id.setter
    def campaign_id(self, value: str) -> None:
        self.where = shared_where(msgspec.structs.replace(self.where, campaign_id=value))

    @property
    def day(self) -> str:
        return self.where.day

    @day.setter
    def day(self, value: str) -> None:
        self.where = shared_where(msgspec.structs.replace(self.where, day=value))

    @property
    def platform(self) -> str:
        return self.where.platform

    @platform.setter
    def platform(self, value: str) -> None:
        self.where = shared_where(msgspec.structs.replace(self.where, platform=value))

    @property
    def client_id(self) -> str:
        return self.where.client_id

    @client_id.setter
    def client_id(self, value: str) -> None:
        self.where = shared_where(msgspec.structs.replace(self.where, client_id=value))

    @property
    def capped(self) -> bool:
        return self.where.capped

    @capped.setter
    def capped(self, value: bool) -> None:
        self.where = shared_where(msgspec.structs.replace(self.where, capped=value))

    @property
    def expires_at_ms(self) -> int:
        return self.created_ms + self.where.hold_ms

    # ------------------------------------------------------------ its own figures
    @property
    def payable_fen(self) -> int:
        payable: int = _FEN.unpack_from(self.sums)[0]
        return payable

    @property
    def discount_fen(self) -> int:
        discount: int = _FEN.unpack_from(self.sums)[1]
        return discount

    @property
    def fen(self) -> tuple[int, int]:
        """(payable_fen, discount_fen), unpacked at once."""
        payable, discount = _FEN.unpack_from(self.sums)
        return payable, discount

    @property
    def pay_fen(self) -> int:
        payable, discount = _FEN.unpack_from(self.sums)
        pay: int = payable - discount
        return pay

    @property
    def fingerprint(self) -> bytes:
        return self.sums[_FEN_BYTES:]

    @property
    def lines(self) -> tuple[Line, ...]:
        line = self.line
        return ((line, 1, self.payable_fen),) if isinstance(line, str) else line

    # ------------------------------------------------------ its end and refunds
    @property
    def captured_ms(self) -> int | None:
        if self.status not in _CAPTURED_SINCE:
            return None
        closed = self.closed
        return closed.captured_ms if isinstance(closed, Refunded) else closed

    @captured_ms.setter
    def captured_ms(self, ts_ms: int | None) -> None:
        closed = self.closed
        if isinstance(closed, Refunded):
            closed.captured_ms = ts_ms
        else:
            self.closed = ts_ms

    @property
    def ended_ms(self) -> int | None:
        closed = self.closed
        if self.status not in HOLD_ENDED or isinstance(closed, Refunded):
            return None  # (never Refunded when ended: a refund needs a capture)
        return closed

    @ended_ms.setter
    def ended_ms(self, ts_ms: int | None) -> None:
        assert not isinstance(self.closed, Refunded), "a refunded redemption does not end"
        self.closed = ts_ms

    @property
    def refunded(self) -> Refunded:
        """The figures refunds change (zeros before the first refund)."""
        closed = self.closed
        return closed if isinstance(closed, Refunded) else _NO_REFUNDS

    def _refunded(self) -> Refunded:
        closed = self.closed
        if isinstance(closed, Refunded):
            return closed
        made = self.closed = Refunded(closed)
        return made

    @property
    def returned_payable_fen(self) -> int:
        closed = self.closed
        return closed.returned_payable_fen if type(closed) is Refunded else 0

    @returned_payable_fen.setter
    def returned_payable_fen(self, fen: int) -> None:
        self._refunded().returned_payable_fen = fen

    @property
    def card_refunded_fen(self) -> int:
        closed = self.closed
        return closed.card_refunded_fen if type(closed) is Refunded else 0

    @card_refunded_fen.setter
    def card_refunded_fen(self, fen: int) -> None:
        self._refunded().card_refunded_fen = fen

    @property
    def clawed_back_fen(self) -> int:
        closed = self.closed
        return closed.clawed_back_fen if type(closed) is Refunded else 0

    @clawed_back_fen.setter
    def clawed_back_fen(self, fen: int) -> None:
        self._refunded().clawed_back_fen = fen

    @property
    def returned_qty(self) -> dict[str, int] | None:
        closed = self.closed
        return closed.returned_qty if type(closed) is Refunded else None

    @returned_qty.setter
    def returned_qty(self, qty: dict[str, int] | None) -> None:
        self._refunded().returned_qty = qty

    @property
    def refunds(self) -> tuple[Refund, ...]:
        closed = self.closed
        return closed.refunds if type(closed) is Refunded else ()

    @refunds.setter
    def refunds(self, refunds: tuple[Refund, ...]) -> None:
        self._refunded().refunds = refunds

    @property
    def ever_refunded(self) -> bool:
        """A refund was recorded (its figures are kept): until then every refund figure
        reads 0. One type test where the invariant check would read four accessors."""
        return type(self.closed) is Refunded

    def returned_of(self, sku: str) -> int:
        """The quantity of ``sku`` returned by its refunds so far."""
        qty = self.returned_qty
        return qty.get(sku, 0) if qty else 0
