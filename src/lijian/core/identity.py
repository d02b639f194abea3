"""One person across identities: transitive groups of persons that share an identifier.

Why: a payment channel's own rule is that one user is one device, phone, card or ID. With
``[identity] link_by = ["device_id", "card_hash", …]`` two persons whose orders carry the
same value of a listed identifier are one person from then on, for the savings cap and
the count limits, transitively (A shares a device with B, B a card with C: A, B and C
are one group).

This is a union-find over person ids. Each identifier value belongs to the first person
that presented it; presenting a value that belongs to another group joins the two groups.
The *first person* of a group (the member recorded earliest) is its key: it is the
``person_key`` of the admission window's draw, so linking accounts never buys a bot an
extra draw. Pure: the ledger changes it only when it applies an ``IdentifiersSeen`` entry,
so replay rebuilds it exactly.

Bounded cost: the root of each group keeps the group's running totals (used, held,
counts), so a request reads its group's figures in a few dictionary lookups whatever the
group's size, and joining two groups is O(1) (members are a circular list, totals are
added). ``GROUP_SIZE_MAX`` bounds how many persons a decision lets into one group; the
ledger declines a member beyond it (``identity_group_full``) and records nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

Identifier = tuple[str, str]  # (kind, value), e.g. ("card_hash", "c9f0…")
# A person's figures when it enters the groups: (used, held, count_total, count_by_day).
Figures = tuple[int, int, int, dict[str, int]]
FiguresOf = Callable[[str], Figures]

# The most persons one group may hold. A family or a household shares a device or a card;
# a hundred accounts on one device is a farm or a placeholder value (a default device id)
# that must not make strangers one person. Beyond it a new member is declined with
# ``identity_group_full`` and the group is flagged (a ``GroupFull`` entry).
GROUP_SIZE_MAX = 100
# What a person's view lists of its group (the group is at most GROUP_SIZE_MAX anyway;
# the bound holds also for groups a ledger made before the limit existed).
MEMBERS_LISTED_MAX = GROUP_SIZE_MAX


def _no_figures(_: str) -> Figures:
    return (0, 0, 0, {})


class IdentityState(msgspec.Struct, array_like=True):
    """The groups as plain data (snapshots): every recorded person in recording order,
    each one's parent, and the owner of every identifier value."""

    persons: list[str]
    parents: list[str]
    owners: list[tuple[str, str, str]]  # (kind, value, person id)
    # Groups that declined a member (key, when, size it would have had); default: a
    # snapshot from before the limit.
    full: list[tuple[str, int, int]] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class GroupTotals:
    """A group's figures, kept at its root: the sum over its members' person figures."""

    size: int
    used_fen: int
    held_fen: int
    count_total: int
    count_by_day: dict[str, int] = field(default_factory=dict)


class IdentityGroups:
    """Union-find with the earliest-recorded member as each group's root."""

    __slots__ = ("_next", "_order", "_owner", "_parent", "_totals", "full")

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._order: dict[str, int] = {}  # person → recording order (smaller = first)
        self._next: dict[str, str] = {}  # each group's members as one circular list
        self._totals: dict[str, GroupTotals] = {}  # root → the group's figures
        self._owner: dict[Identifier, str] = {}
        # group key → (when, the size it would have had): groups that declined a member.
        self.full: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._parent)

    # ------------------------------------------------------------------ reading
    def find(self, person_id: str) -> str:
        """The key of ``person_id``'s group (itself when never linked)."""
        parent = self._parent
        root = person_id
        for _ in range(len(parent) + 1):
            up = parent.get(root, root)
            if up == root:
                break
            root = up
        # Path compression: later finds of these persons are one step.
        node = person_id
        while node != root:
            up = parent[node]
            parent[node] = root
            node = up
        return root

    def totals(self, person_id: str) -> GroupTotals | None:
        """The figures of ``person_id``'s group (None: never recorded, a lone person)."""
        if person_id not in self._parent:
            return None
        return self._totals[self.find(person_id)]

    def size(self, person_id: str) -> int:
        t = self.totals(person_id)
        return 1 if t is None else t.size

    def members(self, person_id: str, limit: int | None = None) -> list[str]:
        """Every person of the group, the first one first (a lone person: itself); with
        ``limit``, only the first ``limit`` of them."""
        if person_id not in self._parent:
            return [person_id]
        root = self.find(person_id)
        out = [root]
        node = self._next[root]
        for _ in range(self._totals[root].size):
            if node == root:
                break
            out.append(node)
            node = self._next[node]
        out.sort(key=self._order.__getitem__)
        return out if limit is None else out[:limit]

    def owner(self, identifier: Identifier) -> str | None:
        return self._owner.get(identifier)

    def would_join(self, person_id: str, identifiers: Iterable[Identifier]) -> list[str]:
        """The group keys ``person_id`` would be linked with if it presented these
        identifiers now (its own first), without changing anything."""
        roots = [self.find(person_id)]
        for ident in identifiers:
            other = self._owner.get(ident)
            if other is not None:
                r = self.find(other)
                if r not in roots:
                    roots.append(r)
        return roots

    def joined_size(self, roots: Iterable[str]) -> int:
        """How many persons the groups of these (distinct) keys hold together."""
        return sum(self.size(r) for r in roots)

    def would_be_members(self, person_id: str, identifiers: Iterable[Identifier]) -> list[str]:
        """The members of the group ``person_id`` would be in (see ``would_join``)."""
        out: list[str] = []
        for root in self.would_join(person_id, identifiers):
            out.extend(self.members(root))
        return out

    def new_identifiers(
        self, person_id: str, identifiers: Iterable[Identifier]
    ) -> list[Identifier]:
        """The identifiers that recording would change something for: values nobody owns
        yet, or owned by another group."""
        root = self.find(person_id)
        out: list[Identifier] = []
        for ident in identifiers:
            other = self._owner.get(ident)
            if (other is None or self.find(other) != root) and ident not in out:
                out.append(ident)
        return out

    # ------------------------------------------------------------------ changing
    def _add(self, person_id: str, figures_of: FiguresOf) -> None:
        if person_id not in self._parent:
            self._parent[person_id] = person_id
            self._order[person_id] = len(self._order)
            self._next[person_id] = person_id
            used, held, count, by_day = figures_of(person_id)
            self._totals[person_id] = GroupTotals(1, used, held, count, dict(by_day))

    def adjust(self, person_id: str, used_fen: int, held_fen: int, count: int, day: str) -> None:
        """A member's figures moved by these amounts (``count`` on ``day``): so do its
        group's. A person never recorded has no group: nothing to do."""
        if person_id not in self._parent:
            return
        t = self._totals[self.find(person_id)]
        t.used_fen += used_fen
        t.held_fen += held_fen
        if count:
            t.count_total += count
            t.count_by_day[day] = t.count_by_day.get(day, 0) + count

    def union(self, a: str, b: str, figures_of: FiguresOf = _no_figures) -> str:
        """Join the groups of ``a`` and ``b``; return the key of the joined group."""
        self._add(a, figures_of)
        self._add(b, figures_of)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self._order[rb] < self._order[ra]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        # Splice the two circular member lists into one: O(1).
        self._next[ra], self._next[rb] = self._next[rb], self._next[ra]
        ta, tb = self._totals[ra], self._totals.pop(rb)
        ta.size += tb.size
        ta.used_fen += tb.used_fen
        ta.held_fen += tb.held_fen
        ta.count_total += tb.count_total
        for day, n in tb.count_by_day.items():
            ta.count_by_day[day] = ta.count_by_day.get(day, 0) + n
        return ra

    def record(
        self, person_id: str, identifiers: Sequence[Identifier], figures_of: FiguresOf = _no_figures
    ) -> list[str]:
        """``person_id`` presented these identifiers: own the new values, join the groups
        of values owned elsewhere. Returns the keys of the groups it joined (not its own).
        ``figures_of`` gives a person's figures when it enters the groups."""
        self._add(person_id, figures_of)
        joined: list[str] = []
        for ident in identifiers:
            other = self._owner.get(ident)
            if other is None:
                self._owner[ident] = person_id
                continue
            r_other, r_own = self.find(other), self.find(person_id)
            if r_other != r_own:
                joined.append(r_other)
                self.union(person_id, other, figures_of)
        return joined

    # ------------------------------------------------------------------ snapshots
    def to_state(self) -> IdentityState:
        persons = sorted(self._order, key=self._order.__getitem__)
        return IdentityState(
            persons,
            [self.find(p) for p in persons],
            [(k, v, p) for (k, v), p in self._owner.items()],
            [(k, at, n) for k, (at, n) in self.full.items()],
        )

    @classmethod
    def from_state(
        cls, state: IdentityState, figures_of: FiguresOf = _no_figures
    ) -> IdentityGroups:
        """The groups of a snapshot; the totals are summed again from the persons'
        figures (``figures_of``), which the snapshot holds."""
        g = cls()
        for p in state.persons:
            g._add(p, figures_of)
        for p, root in zip(state.persons, state.parents, strict=True):
            if root != p:
                g.union(root, p)
        g._owner = {(k, v): p for k, v, p in state.owners}
        g.full = {k: (at, n) for k, at, n in state.full}
        return g


def identifiers_of(
    link_by: Sequence[str], device_id: str | None, card_hash: str | None, phone_hash: str | None
) -> list[Identifier]:
    """The (kind, value) pairs of an order's person that ``link_by`` lists (empty values
    are no identifier)."""
    given = {"device_id": device_id, "card_hash": card_hash, "phone_hash": phone_hash}
    return [(k, v) for k in link_by if (v := given.get(k))]
