"""Every redemption of a snapshot as columns: one list per field, not one record each.

A restart at a city's size restores a million redemptions. Decoded as a million
records, each brings its own copy of its shared :class:`Where` (then looked up in the
table of shared ones), its person's id (then swapped for the person's own copy) and a
tuple per index entry built from it. As columns the decoder makes lists in C: the
``Where`` values once each (``where_of`` numbers them), each redemption's person as its
place among the snapshot's persons (``person_of``), and the restore builds the records
and the indexes over them from those lists with ``map``/``zip``/``compress`` rather than
a statement per record (docs/PERFORMANCE.md, "Where a restart's time goes").

The records are the same :class:`Redemption` values either way: ``to_columns`` then
``from_columns`` gives records equal to the ones encoded, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import compress
from operator import add
from sys import intern

import msgspec

from lijian.core.redemption import (
    Line,
    Redemption,
    Refunded,
    Where,
    interned_lines,
    shared_where,
)
from lijian.core.status import HOLD_ENDED, RedemptionStatus

HELD = RedemptionStatus.HELD


class RedemptionColumns(msgspec.Struct, array_like=True):
    """The redemptions of a snapshot, field by field, in the order they were placed."""

    wheres: list[Where]  # each distinct value once, in order of first use
    where_of: list[int]  # per redemption: its place in ``wheres``
    ids: list[str]
    person_of: list[int]  # per redemption: its person's place among the snapshot's persons
    order_ids: list[str]
    keys: list[str]  # Idempotency-Keys
    created_ms: list[int]
    sums: list[bytes]
    lines: list[str | tuple[Line, ...]]  # each distinct ``line`` once (a SKU, or lines)
    line_of: list[int]  # per redemption: its line's place in ``lines``
    statuses: list[RedemptionStatus]
    closed: list[int | Refunded | None]


def to_columns(
    reds: list[Redemption], person_places: Mapping[str, Mapping[str, int]]
) -> RedemptionColumns:
    """``reds`` as columns; ``person_places``: campaign id → person id → the person's place
    in the snapshot's persons (every redemption's person is in its campaign's book)."""
    places: dict[Where, int] = {}
    lines: dict[str | tuple[Line, ...], int] = {}
    where_of = [places.setdefault(r.where, len(places)) for r in reds]
    wheres = list(places)
    campaign_of = [w.campaign_id for w in wheres]
    person_of = [
        person_places[campaign_of[w]][r.person_id] for r, w in zip(reds, where_of, strict=True)
    ]
    line_of = [lines.setdefault(r.line, len(lines)) for r in reds]
    return RedemptionColumns(
        wheres,
        where_of,
        [r.id for r in reds],
        person_of,
        [r.order_id for r in reds],
        [r.idempotency_key for r in reds],
        [r.created_ms for r in reds],
        [r.sums for r in reds],
        list(lines),
        line_of,
        [r.status for r in reds],
        [r.closed for r in reds],
    )


def from_columns(c: RedemptionColumns, person_ids: list[str]) -> list[Redemption]:
    """The records again, in order; each names its person with ``person_ids``' own copy
    of the id (the person's, as apply builds it: one string, not one per record)."""
    n = len(c.ids)
    assert all(
        len(col) == n
        for col in (c.where_of, c.person_of, c.order_ids, c.keys, c.created_ms, c.sums,
                    c.line_of, c.statuses, c.closed)
    ), "one entry per redemption in every column"  # fmt: skip
    wheres = [shared_where(w) for w in c.wheres]
    lines = [intern(x) if isinstance(x, str) else interned_lines(x) for x in c.lines]
    return list(
        map(
            Redemption,
            c.ids,
            map(wheres.__getitem__, c.where_of),
            map(person_ids.__getitem__, c.person_of),
            c.order_ids,
            c.keys,
            c.created_ms,
            c.sums,
            map(lines.__getitem__, c.line_of),
            c.statuses,
            c.closed,
        )
    )


def active_columns(
    c: RedemptionColumns, of: Callable[[Where], str]
) -> tuple[list[str], list[str], list[str]]:
    """(``of(where)``, order id, redemption id) of every redemption not voided or
    expired, in order: the R15 index's entries (``of``: the platform)."""
    active = [s not in HOLD_ENDED for s in c.statuses]
    outer = [of(w) for w in c.wheres]
    return (
        list(map(outer.__getitem__, compress(c.where_of, active))),
        list(compress(c.order_ids, active)),
        list(compress(c.ids, active)),
    )


def per_where(c: RedemptionColumns, of: Callable[[Where], str]) -> list[str]:
    """``of(where)`` of every redemption, in order (``of``: its client, say)."""
    outer = [of(w) for w in c.wheres]
    return list(map(outer.__getitem__, c.where_of))


def expiries(c: RedemptionColumns) -> list[tuple[int, str]]:
    """(``expires_at_ms``, id) of every redemption still held, in order: the ledger's
    expiry heap before it is heapified. ``Redemption.expires_at_ms`` is the creation time
    plus its Where's ``hold_ms``; the same sum, made in C over the columns (a million
    holds at the bench's size)."""
    held = [s is HELD for s in c.statuses]
    hold_ms = [w.hold_ms for w in c.wheres]
    created_ms = list(compress(c.created_ms, held))
    at_ms = map(add, created_ms, map(hold_ms.__getitem__, compress(c.where_of, held)))
    return list(zip(at_ms, compress(c.ids, held), strict=True))
