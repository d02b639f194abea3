"""The campaign goods catalogue (R12): (platform, sku) → category, held in memory.

The hot path looks a SKU up without a database round trip. Memory is kept small by
storing, per platform, a dict from SKU to a one-byte category index (categories are
interned), which costs about 100 bytes a SKU in CPython.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_CATEGORIES = 255


class Catalog:
    def __init__(self) -> None:
        self._by_platform: dict[str, dict[str, int]] = {}
        self._categories: list[str] = []
        self._category_index: dict[str, int] = {}
        # platform → sku → reference price (fen): only SKUs that were given one.
        self._reference_fen: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_platform.values())

    def category_of(self, platform: str, sku: str) -> str | None:
        skus = self._by_platform.get(platform)
        if skus is None:
            return None
        i = skus.get(sku)
        return None if i is None else self._categories[i]

    def upsert(self, rows: Iterable[tuple[str, str, str]]) -> int:
        n = 0
        index = self._category_index
        for platform, sku, category in rows:
            i = index.get(category)
            if i is None:
                if len(self._categories) >= MAX_CATEGORIES:
                    raise ValueError(f"more than {MAX_CATEGORIES} distinct categories")
                i = index[category] = len(self._categories)
                self._categories.append(category)
            skus = self._by_platform.get(platform)
            if skus is None:
                skus = self._by_platform[platform] = {}
            # sys.intern is not used: SKUs are unique, interning would only add a table.
            skus[sku] = i
            n += 1
        return n

    def reference_price_fen(self, platform: str, sku: str) -> int | None:
        """The SKU's ordinary price before the campaign, if its catalogue line gave one."""
        skus = self._reference_fen.get(platform)
        return None if skus is None else skus.get(sku)

    def set_reference_prices(self, rows: Iterable[tuple[str, str, int]]) -> int:
        """Set (platform, sku, reference_price_fen) rows; the last for a SKU wins."""
        n = 0
        for platform, sku, price_fen in rows:
            assert price_fen > 0, "reference prices are checked before they are stored"
            skus = self._reference_fen.get(platform)
            if skus is None:
                skus = self._reference_fen[platform] = {}
            skus[sku] = price_fen
            n += 1
        return n

    def changed_prices(self, rows: Iterable[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """Of ``rows``, those that change a SKU's reference price (new or different),
        the last for a SKU: the store records changes, so uploading the same catalogue
        again records nothing."""
        last: dict[tuple[str, str], int] = {}
        for platform, sku, price_fen in rows:
            last[platform, sku] = price_fen
        return [(p, s, v) for (p, s), v in last.items() if self.reference_price_fen(p, s) != v]

    def has(self, category: str) -> bool:
        return category in self._category_index

    @property
    def categories(self) -> int:
        """How many distinct categories the catalogue holds."""
        return len(self._categories)

    def first_overflow(self, categories: Iterable[str]) -> str | None:
        """The first of ``categories`` (in order) that would take the catalogue past
        ``MAX_CATEGORIES``; None when they all fit. ``upsert`` raises only after the rows
        are durable, and the next start would then fail to load them: check first."""
        room = MAX_CATEGORIES - len(self._categories)
        for c in categories:
            if c not in self._category_index:
                room -= 1
                if room < 0:
                    return c
        return None

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """Every (platform, sku, category), e.g. to copy a catalogue."""
        for platform, skus in self._by_platform.items():
            for sku, i in skus.items():
                yield platform, sku, self._categories[i]

    def count_by_platform(self) -> dict[str, int]:
        return {p: len(d) for p, d in sorted(self._by_platform.items())}
