"""A campaign's persons in a snapshot as columns: one list per field, not one record each.

The persons' counterpart of :mod:`lijian.core.redemption_columns`: a restart at a city's
size restores a million persons. As columns the decoder makes lists in C, the latest day
of each person is its place in a table of the days (one string per day, shared by every
person, as apply shares it), and the restore builds the records with ``map``.
``to_columns`` then ``from_columns`` gives persons equal to the ones encoded, in order.
"""

from __future__ import annotations

from sys import intern

import msgspec

from lijian.core.book import PendingRestore, Person


class PersonColumns(msgspec.Struct, array_like=True):
    """A book's persons, field by field, in the book's order."""

    days: list[str | None]  # each latest day once (None: a person with none counted)
    ids: list[str]
    used_fen: list[int]
    held_fen: list[int]
    day_of: list[int]  # per person: its latest day's place in ``days``
    day_count: list[int]
    earlier_days: list[dict[str, int] | None]
    restores: list[list[PendingRestore] | None]


def to_columns(persons: list[Person]) -> PersonColumns:
    places: dict[str | None, int] = {}
    day_of = [places.setdefault(p.day, len(places)) for p in persons]
    return PersonColumns(
        list(places),
        [p.person_id for p in persons],
        [p.used_fen for p in persons],
        [p.held_fen for p in persons],
        day_of,
        [p.day_count for p in persons],
        [p.earlier_days for p in persons],
        [p.restores for p in persons],
    )


def from_columns(c: PersonColumns) -> list[Person]:
    """The persons again, in order, each latest day one shared string."""
    n = len(c.ids)
    assert all(
        len(col) == n
        for col in (c.used_fen, c.held_fen, c.day_of, c.day_count, c.earlier_days, c.restores)
    ), "one entry per person in every column"
    days = [None if d is None else intern(d) for d in c.days]
    return list(
        map(
            Person,
            c.ids,
            c.used_fen,
            c.held_fen,
            map(days.__getitem__, c.day_of),
            c.day_count,
            c.earlier_days,
            c.restores,
        )
    )
