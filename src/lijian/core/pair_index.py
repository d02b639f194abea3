"""The ledger's indexes keyed by a pair of strings, one dict per first string.

``(platform, order_id)`` → the redemption holding the order (R15), and ``(client_id,
Idempotency-Key)`` → what the key was used for: a million entries each, over a handful
of platforms and clients. A tuple key costs 56 B per entry; here the first string keys
one dict per platform (per client) and the second its entry, so an entry costs only its
place in that dict. Readers still pass the pair, as to a dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from typing import Generic, TypeVar

from lijian.core.status import KeyUse

V = TypeVar("V")
Pair = tuple[str, str]


class PairIndex(Generic[V]):
    """A dict keyed by (outer, inner) string pairs, stored as a dict per outer key."""

    __slots__ = ("_by",)

    def __init__(self, items: Iterable[tuple[Pair, V]] = ()) -> None:
        self._by: dict[str, dict[str, V]] = {}
        self.update(items)

    def get(self, key: Pair) -> V | None:
        inner = self._by.get(key[0])
        return None if inner is None else inner.get(key[1])

    def __contains__(self, key: Pair) -> bool:
        inner = self._by.get(key[0])
        return inner is not None and key[1] in inner

    def __setitem__(self, key: Pair, value: V) -> None:
        inner = self._by.get(key[0])
        if inner is None:
            inner = self._by[key[0]] = {}
        inner[key[1]] = value

    def __delitem__(self, key: Pair) -> None:
        inner = self._by[key[0]]
        del inner[key[1]]
        if not inner:
            del self._by[key[0]]

    def __len__(self) -> int:
        return sum(len(inner) for inner in self._by.values())

    def __iter__(self) -> Iterator[Pair]:
        return ((a, b) for a, inner in self._by.items() for b in inner)

    def items(self) -> Iterator[tuple[Pair, V]]:
        return (((a, b), v) for a, inner in self._by.items() for b, v in inner.items())

    def update(self, items: Iterable[tuple[Pair, V]]) -> None:
        by = self._by
        for (a, b), value in items:
            inner = by.get(a)
            if inner is None:
                inner = by[a] = {}
            inner[b] = value

    def fill(self, outers: Sequence[str], inners: Sequence[str], values: Sequence[V]) -> None:
        """``update`` of the pairs ``(outers[i], inners[i]) → values[i]``, in that order,
        given as columns: each outer key's entries go into its dict in one C call
        (a restore fills a million; the loop of ``update`` cost ~0.5 µs an entry)."""
        assert len(outers) == len(inners) == len(values), "one column entry per pair"
        by = self._by
        distinct = list(dict.fromkeys(outers))  # in order of first use, as update makes them
        for a in distinct:
            if len(distinct) == 1:
                pairs = zip(inners, values, strict=True)
            else:
                chosen = [o == a for o in outers]
                pairs = zip(compress(inners, chosen), compress(values, chosen), strict=True)
            inner = by.get(a)
            if inner is None:
                by[a] = dict(pairs)
            else:
                inner.update(pairs)


Use = tuple[KeyUse, str, str]  # what a key was used for, the record's id, the refund's id


class KeyIndex:
    """(client, Idempotency-Key) → (what it was used for, redemption or voucher id,
    refund id or ""), read and written as a dict of those tuples. A hold's key, nearly
    every key, keeps only the redemption's id (shared with its record): its tuple is
    made again when it is read."""

    __slots__ = ("_by", "_keys")

    def __init__(self) -> None:
        self._keys: PairIndex[str | Use] = PairIndex()
        self._by = self._keys._by  # read by ``in`` directly: asked on every redemption

    @staticmethod
    def _kept(use: Use) -> str | Use:
        return use[1] if use[0] == KeyUse.HOLD and not use[2] else use

    def get(self, key: Pair) -> Use | None:
        seen = self._keys.get(key)
        return (KeyUse.HOLD, seen, "") if isinstance(seen, str) else seen

    def __contains__(self, key: Pair) -> bool:
        inner = self._by.get(key[0])
        return inner is not None and key[1] in inner

    def __setitem__(self, key: Pair, use: Use) -> None:
        self._keys[key] = self._kept(use)

    def __len__(self) -> int:
        return len(self._keys)

    def update(self, items: Iterable[tuple[Pair, Use]]) -> None:
        kept = self._kept
        self._keys.update((key, kept(use)) for key, use in items)

    def add_holds(self, clients: list[str], keys: list[str], ids: list[str]) -> None:
        """Holds' keys, each with its redemption's id, as columns (a snapshot's restore:
        no tuple made per key only to be taken apart)."""
        self._keys.fill(clients, keys, ids)
