"""A PostgreSQL ledger read, and only read: what a standby follows while it waits.

A standby must not write anything before it holds the lease, not even a migration
(``PostgresStore`` applies them when it opens), so it reads through this: one plain
connection, every transaction read-only (``default_transaction_read_only``), no pool,
no migrations. It offers what :func:`lijian.stored_ledger.open_stored_ledger` reads
(the newest snapshot, the entries after a seq), so the standby's first load is the
recovery's own code.

Every entry read is checked against the hash chain (``lijian.core.chain``): the body
linked to the chain before it must give the chain stored with it. Entries are read in
``seq`` order a page at a time, and a page that skipped an entry (one whose commit was
late, were there ever two writers) or a rewritten one breaks the link: the reader raises
:class:`TailBroken` instead of handing on a log with a hole. With one writer whose
commits follow one another (``writer.py``) this never happens; the check makes the
standby's ledger depend on the chain, not on that argument alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg.rows import TupleRow

from lijian.core.chain import GENESIS, link
from lijian.core.entries import AnyEntry, decode
from lijian.store.migrations import load_migrations
from lijian.store.snapshot_parts import LATEST_SNAPSHOT_SQL, joined_snapshot

READ_PAGE_ROWS = 10_000  # entries per round trip (a page's bodies are held at once)
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 300_000  # the newest snapshot of a city's ledger is a long read


class TailBroken(Exception):
    """The log cannot be followed here: an entry whose chain does not link, an entry
    with no chain, or a schema newer than this code knows."""


class LogReader:
    """Read-only access to one PostgreSQL ledger's log, its position kept: ``read_seq``
    is the seq of the last entry handed on, ``head`` the chain after it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.read_seq = 0
        self.head = GENESIS
        self._conn: psycopg.Connection[TupleRow] | None = None

    def _connection(self) -> psycopg.Connection[TupleRow]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            # Set in the session, not in the URL's ``options`` (which may carry the
            # ledger's search_path): every transaction of this connection reads only.
            conn.execute("SET default_transaction_read_only = on")
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def check_schema(self) -> None:
        """Raise ``TailBroken`` if the database's schema is newer than this code's (a
        newer sequencer migrated it: its entries may be ones this code cannot apply)."""
        row = self._connection().execute("SELECT max(version) FROM schema_migrations").fetchone()
        newest = load_migrations()[-1].version
        if row is not None and row[0] is not None and int(row[0]) > newest:
            raise TailBroken(f"database schema {row[0]} is newer than this code's ({newest})")

    # ----------------------------------------------------------- what recovery reads
    @property
    def last_seq(self) -> int:
        row = self._connection().execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        return int(row[0]) if row else 0

    def campaigns(self) -> list[tuple[str, str]]:
        rows = (
            self._connection()
            .execute("SELECT id, settings_json FROM campaigns ORDER BY id")
            .fetchall()
        )
        return [(str(a), str(b)) for a, b in rows]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        rows = self._connection().execute(LATEST_SNAPSHOT_SQL, binary=True).fetchall()
        return joined_snapshot(rows)

    def snapshot_seq(self) -> int:
        """The seq of the newest complete snapshot (0: none), without reading it."""
        row = self._connection().execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()
        return int(row[0]) if row else 0

    def iter_entries(self) -> Iterator[tuple[int, AnyEntry]]:
        for body in self.iter_bodies(0):
            yield self.read_seq, decode(body)

    def iter_bodies(self, after_seq: int = 0, limit: int | None = None) -> Iterator[bytes]:
        """The bodies of the entries after ``after_seq`` in seq order (at most ``limit``,
        None: every one), each checked against the chain; ``read_seq`` and ``head``
        follow what was handed on."""
        if after_seq != self.read_seq:
            self._seek(after_seq)
        left = limit
        while left is None or left > 0:
            page_rows = READ_PAGE_ROWS if left is None else min(left, READ_PAGE_ROWS)
            page = (
                self._connection()
                .execute(
                    "SELECT seq, body, chain FROM entries WHERE seq > %s ORDER BY seq LIMIT %s",
                    (self.read_seq, page_rows),
                    binary=True,  # half the read of a text (hex) page (measured)
                )
                .fetchall()
            )
            for seq, body, chain in page:
                raw = bytes(body)
                if chain is None:
                    raise TailBroken(f"entry {seq} has no chain: the log cannot be checked")
                head = link(self.head, raw)
                if head != bytes(chain):
                    raise TailBroken(
                        f"entry {seq} does not link to the entry before it (seq"
                        f" {self.read_seq}): an entry was skipped or rewritten"
                    )
                self.read_seq, self.head = int(seq), head
                yield raw
            if left is not None:
                left -= len(page)
            if len(page) < page_rows:
                return

    def _seek(self, after_seq: int) -> None:
        """Position the reader after ``after_seq``: the chain stored with that entry."""
        if after_seq == 0:
            self.read_seq, self.head = 0, GENESIS
            return
        row = (
            self._connection()
            .execute("SELECT chain FROM entries WHERE seq = %s", (after_seq,))
            .fetchone()
        )
        if row is None or row[0] is None:
            raise TailBroken(f"no chained entry at seq {after_seq} to follow the log from")
        self.read_seq, self.head = after_seq, bytes(row[0])
