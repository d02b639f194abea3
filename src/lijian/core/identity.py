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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

Identifier = tuple[str, str]  # (kind, value), e.g. ("card_hash", "c9f0…")


class IdentityState(msgspec.Struct, array_like=True):
    """The groups as plain data (snapshots): every recorded person in recording order,
    each one's parent, and the owner of every identifier value."""

    persons: list[str]
    parents: list[str]
    owners: list[tuple[str, str, str]]  # (kind, value, person id)


class IdentityGroups:
    """Union-find with the earliest-recorded member as each group's root."""

    __slots__ = ("_members", "_order", "_owner", "_parent")

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._order: dict[str, int] = {}  # person → recording order (smaller = first)
        self._members: dict[str, list[str]] = {}  # root → members, first person first
        self._owner: dict[Identifier, str] = {}

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

    def members(self, person_id: str) -> list[str]:
        """Every person of the group, the first one first (a lone person: itself)."""
        return list(self._members.get(self.find(person_id), [person_id]))

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

    def would_be_members(self, person_id: str, identifiers: Iterable[Identifier]) -> list[str]:
        """The members of the group ``person_id`` would be in (see ``would_join``)."""
        out: list[str] = []
        for root in self.would_join(person_id, identifiers):
            out.extend(self._members.get(root, [root]))
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
    def _add(self, person_id: str) -> None:
        if person_id not in self._parent:
            self._parent[person_id] = person_id
            self._order[person_id] = len(self._order)
            self._members[person_id] = [person_id]

    def union(self, a: str, b: str) -> str:
        """Join the groups of ``a`` and ``b``; return the key of the joined group."""
        self._add(a)
        self._add(b)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self._order[rb] < self._order[ra]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        joined = self._members[ra] + self._members.pop(rb)
        joined.sort(key=self._order.__getitem__)
        self._members[ra] = joined
        return ra

    def record(self, person_id: str, identifiers: Sequence[Identifier]) -> list[str]:
        """``person_id`` presented these identifiers: own the new values, join the groups
        of values owned elsewhere. Returns the persons newly in ``person_id``'s group."""
        self._add(person_id)
        before = set(self.members(person_id))
        for ident in identifiers:
            other = self._owner.get(ident)
            if other is None:
                self._owner[ident] = person_id
            else:
                self.union(person_id, other)
        return [p for p in self.members(person_id) if p not in before]

    # ------------------------------------------------------------------ snapshots
    def to_state(self) -> IdentityState:
        persons = sorted(self._order, key=self._order.__getitem__)
        return IdentityState(
            persons,
            [self.find(p) for p in persons],
            [(k, v, p) for (k, v), p in self._owner.items()],
        )

    @classmethod
    def from_state(cls, state: IdentityState) -> IdentityGroups:
        g = cls()
        for p in state.persons:
            g._add(p)
        for p, root in zip(state.persons, state.parents, strict=True):
            if root != p:
                g.union(root, p)
        g._owner = {(k, v): p for k, v, p in state.owners}
        return g


def identifiers_of(
    link_by: Sequence[str], device_id: str | None, card_hash: str | None, phone_hash: str | None
) -> list[Identifier]:
    """The (kind, value) pairs of an order's person that ``link_by`` lists (empty values
    are no identifier)."""
    given = {"device_id": device_id, "card_hash": card_hash, "phone_hash": phone_hash}
    return [(k, v) for k in link_by if (v := given.get(k))]
