"""Storage adapters: SQLite (embedded, one process) and PostgreSQL (one or more processes).

``open_store(db)`` picks the adapter from the ``--db`` argument: a ``postgresql://`` URL
gives :class:`~lijian.store.postgres.PostgresStore`, anything else is a SQLite file path.
Both implement :class:`Store`, which is all the engine, the writer and the audit use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from lijian.core.chain import ChainHead, DayClose
from lijian.core.entries import AnyEntry
from lijian.events.model import NewEvent, StoredEvent
from lijian.redact import mask_secrets


class Store(Protocol):
    """What the engine needs from a ledger store (see store/sqlite.py for the model)."""

    path: str
    last_seq: int
    chain: ChainHead  # the hash chain after the last committed entry (core/chain.py)
    day_closes: list[DayClose]  # every campaign's day closes, in seq order
    last_event_seq: int  # the outbox's last event (lijian.events)

    def commit_batch(
        self,
        entries: list[AnyEntry],
        balances: Iterable[tuple[str, int]] = (),
        persons: Iterable[tuple[str, str, int, int]] = (),
        catalog_rows: Iterable[tuple[str, str, str]] = (),
        events: Sequence[NewEvent] = (),
        cursors: Iterable[tuple[str, int]] = (),
        nonces: Sequence[tuple[str, str, int, int]] = (),
        nonces_before_ms: int = 0,
        reference_prices: Iterable[tuple[str, str, int]] = (),
    ) -> int: ...

    def load_nonces(
        self, since_ms: int
    ) -> tuple[list[tuple[str, str, int, int]], dict[str, int]]: ...

    def save_campaign(self, campaign_id: str, settings_json: str) -> None: ...
    def campaigns(self) -> list[tuple[str, str]]: ...
    def iter_entries(self) -> Iterator[tuple[int, AnyEntry]]: ...
    def iter_bodies(self, after_seq: int = 0) -> Iterator[bytes]: ...
    def iter_chain(self) -> Iterator[tuple[int, bytes, bytes | None]]: ...
    def backfill_chain(self) -> int: ...
    def read_events(self, after_seq: int, limit: int) -> list[StoredEvent]: ...
    def read_cursors(self) -> dict[str, int]: ...
    def range_bodies(self, after_seq: int, to_seq: int) -> list[bytes]: ...
    def first_body_with_prefix(self, prefix: bytes) -> bytes | None: ...
    def save_snapshot(self, seq: int, body: bytes) -> None: ...
    def save_snapshot_part(self, seq: int, part: int, body: bytes) -> None: ...
    def finish_snapshot(self, seq: int, parts: int) -> None: ...
    def latest_snapshot(self) -> tuple[int, bytes] | None: ...
    def stored_balances(self) -> dict[str, int]: ...
    def stored_persons(self) -> dict[tuple[str, str], tuple[int, int]]: ...
    def catalog_rows(self) -> Iterator[tuple[str, str, str]]: ...
    def reference_prices(self) -> Iterator[tuple[str, str, int]]: ...
    def consistent_reads(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...


def is_postgres_url(db: object) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def shown_db(db: str | Path) -> str:
    """``--db`` as it may be logged or printed: a PostgreSQL URL without its password
    (in the URL's user part, or a ``password=`` parameter); a path as it is."""
    text = str(db)
    return mask_secrets(text) if is_postgres_url(text) else text


def open_store(db: str | Path, synchronous: str = "FULL", node_id: str = "a") -> Store:
    """A ``postgresql://`` URL → PostgresStore; a path → SqliteStore."""
    if is_postgres_url(db):
        from lijian.store.postgres import PostgresStore

        return PostgresStore(str(db), synchronous, node_id=node_id)
    from lijian.store.sqlite import SqliteStore

    return SqliteStore(db, synchronous)
