"""Catalogue uploads through the one writer.

An upload of a million rows must not stop the grants around it: its rows go to the
writer in chunks of ``CATALOG_CHUNK_ROWS``, one command each, so grants interleave with
them, and the rows are indexed (a SKU is "in") only once they are durable. Its reference
prices follow the same way; only the changes are stored. The engine's door checks what
could stop the ledger from starting again (a NUL, which PostgreSQL text cannot hold; a
category past the catalogue's limit), counting the new categories of uploads still in
flight, so that two which each fit cannot together pass the limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from operator import itemgetter

from lijian.catalog import MAX_CATEGORIES, Catalog
from lijian.core.errors import CatalogFull, InvalidRequest
from lijian.writer import BatchContext, GroupCommitWriter

CATALOG_CHUNK_ROWS = 50_000  # one writer command per chunk keeps grants flowing meanwhile


class CatalogUploads:
    """The engine's catalogue uploads: checked, stored in chunks, then indexed."""

    def __init__(self, writer: GroupCommitWriter, catalog: Catalog) -> None:
        self.writer = writer
        self.catalog = catalog
        self._pending: set[str] = set()  # new categories of uploads in flight
        # Rows made durable since start, every upload: a long upload's progress, which a
        # sequencer reports to the gateway waiting for it (cluster/uploads.py).
        self.stored_rows = 0

    async def upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int],
        prices: list[tuple[str, str, int]],
    ) -> int:
        """Store catalogue rows durably, in chunks that interleave with grants, then index.
        ``prices`` are the rows' reference prices (platform, sku, fen), checked as rows are;
        only the changes are stored (each a row of the store's price history).

        The rows' categories are checked against the catalogue's category limit first
        (``CatalogFull``, nothing stored): the limit depends on what is stored already, so
        only the engine can decide it. ``categories`` (category → first line it appears
        on) only names the line; what is counted is what the rows bring, since a row the
        limit would not hold makes the next start fail to load the catalogue. Rows are
        checked by the caller's rules (``http/arguments.py``);
        here, the last door, only what could stop the ledger from starting again."""
        new = self._check_rows(rows, categories)
        # Uploads in flight hold their new categories, so two that each fit cannot
        # together pass the limit while their chunks interleave in the writer.
        self._pending.update(new)
        try:
            n = await self._store_rows(rows)
            if prices:
                await self._store_prices(prices)
            return n
        finally:
            self._pending.difference_update(new)

    async def _store_rows(self, rows: list[tuple[str, str, str]]) -> int:
        def chunk_cmd(chunk: list[tuple[str, str, str]]) -> Callable[[BatchContext], int]:
            def run(ctx: BatchContext) -> int:
                ctx.catalog_rows.extend(chunk)
                return len(chunk)

            return run

        n = 0
        for i in range(0, len(rows), CATALOG_CHUNK_ROWS):
            stored = await self.writer.submit(chunk_cmd(rows[i : i + CATALOG_CHUNK_ROWS]))
            n += stored
            self.stored_rows += stored
        # Index only after the rows are durable: a SKU is never "in" before it is stored.
        self.catalog.upsert(rows)
        return n

    async def _store_prices(self, prices: list[tuple[str, str, int]]) -> None:
        assert all(type(v) is int and v > 0 for _, _, v in prices), "checked at the door"

        def chunk_cmd(chunk: list[tuple[str, str, int]]) -> Callable[[BatchContext], int]:
            def run(ctx: BatchContext) -> int:
                ctx.reference_prices.extend(chunk)
                return len(chunk)

            return run

        changed = self.catalog.changed_prices(prices)
        for i in range(0, len(changed), CATALOG_CHUNK_ROWS):
            await self.writer.submit(chunk_cmd(changed[i : i + CATALOG_CHUNK_ROWS]))
        # In force only once durable, as the rows' categories.
        self.catalog.set_reference_prices(changed)

    def _check_rows(self, rows: list[tuple[str, str, str]], lines: dict[str, int]) -> list[str]:
        """The rows' categories new to the catalogue, once checked (raises otherwise)."""
        # map/itemgetter keep a million rows in C: the loop thread is the writer's too.
        categories = dict.fromkeys(map(itemgetter(2), rows))  # in order of first row
        texts = itertools.chain(categories, dict.fromkeys(map(itemgetter(0), rows)))
        # PostgreSQL text cannot hold a NUL: the commit would fail, and the writer stop.
        # (The SKUs joined: one scan in C.)
        if any("\x00" in t for t in texts) or "\x00" in "".join(map(itemgetter(1), rows)):
            raise InvalidRequest("a catalogue row holds a NUL character; nothing was stored",
                                 ("sku",))  # fmt: skip
        pending = self._pending
        new = [c for c in categories if c not in pending and not self.catalog.has(c)]
        room = MAX_CATEGORIES - self.catalog.categories - len(pending)
        if len(new) > room:
            full = new[max(room, 0)]
            line = lines.get(full) or next(n for n, r in enumerate(rows, 1) if r[2] == full)
            raise CatalogFull(full, line, MAX_CATEGORIES)
        return new
