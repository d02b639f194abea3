"""Reading committed ledger entries after a given seq, in bounded pages, off the loop.

The dashboard follows the ledger the way a replica follows a log: it asks the store
for the entries after the last one it applied. Only committed entries are read, so the
dashboard never shows a grant that a crash could take back.

Each reader has its own connection (never the engine's writer or pool) and one thread
of its own, so neither reads nor decoding stall the event loop; the connection is
created, used and closed on that thread only, and it cannot write the ledger.

- ``SqliteEntryTail``: a read-only SQLite connection (WAL: readers never block the
  writer). One writer commits entries in seq order, so ``seq > last`` is exact.
- ``PostgresEntryTail``: seq values come from one identity and become visible at commit.
  The engine commits one batch at a time, but nothing in the database stops another
  transaction (a sequencer being replaced whose last commit is still in flight, a tool)
  from committing under a lower seq after a higher one is visible, so ``seq > last``
  alone could skip an entry for good; it reads only up to a *settled horizon* (see the
  class).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from lijian.core.entries import AnyEntry, decode

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

T = TypeVar("T")

PAGE_ENTRIES = 5_000  # one query; ~5 ms to read and decode on this machine


class TailReadError(Exception):
    """A read failed (busy file, lost connection…): the next tick tries again."""


class EntryTail(Protocol):
    async def fetch(
        self, after_seq: int, limit: int = PAGE_ENTRIES
    ) -> list[tuple[int, AnyEntry]]: ...

    def close(self) -> None: ...


class SqliteEntryTail:
    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path).resolve()
        self._conn: sqlite3.Connection | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "lijian-dashboard-tail")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # mode=ro: the dashboard must never be able to write the ledger.
            self._conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        return self._conn

    def _page(self, after_seq: int, limit: int) -> list[tuple[int, AnyEntry]]:
        try:
            rows = (
                self._connect()
                .execute(
                    "SELECT seq, body FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:  # e.g. busy during a checkpoint
            raise TailReadError(f"{type(exc).__name__}: {exc}") from exc
        return [(seq, decode(body)) for seq, body in rows]

    async def fetch(self, after_seq: int, limit: int = PAGE_ENTRIES) -> list[tuple[int, AnyEntry]]:
        assert 0 < limit <= PAGE_ENTRIES * 10
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._page, after_seq, limit)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection on its own thread, then let the thread go (idempotent)."""
        try:
            self._thread.submit(self._close)
        except RuntimeError:  # already shut down
            return
        self._thread.shutdown(wait=False)


# ------------------------------------------------------------------ PostgreSQL
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000  # a stuck read fails the tick (shown) instead of hanging it
HORIZON_POLLS = 6  # writer-lock checks per fetch while the newest candidate is in flight
HORIZON_POLL_S = 0.005  # a batch transaction lasts a few ms: the horizon rarely waits longer
CANDIDATES_MAX = 256  # horizon candidates kept while writers are slow (then no new ones)

# Transactions that may still commit entries: every INSERT or COPY into ``entries`` holds
# this lock from before it draws its first seq until its transaction ends. Readers
# (AccessShareLock), VACUUM and the like take other modes and never delay the horizon.
_WRITERS_SQL = (
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation'"
    " AND relation = %s AND mode = 'RowExclusiveLock' AND granted"
)


class PostgresEntryTail:
    """Committed entries of a PostgreSQL ledger, read only up to a settled horizon.

    Why a horizon: ``entries.seq`` is an identity. A transaction draws its seq values
    when it inserts and commits later, so a batch that drew seq 10 may commit after one
    that drew 11. A reader of ``seq > last`` that saw 11 first and moved on would never
    see 10: the dashboard would miss a grant for good. So the tail reads only up to the
    *horizon*, a seq at or below which every entry is settled: committed (and visible to
    every later snapshot) or never to be.

    How: ``H = pg_sequence_last_value`` is the last seq drawn so far. Every transaction
    that drew one of them holds ``RowExclusiveLock`` on ``entries`` from *before* the
    draw (the INSERT or COPY locks its target first) until it ends, and releases it
    only after its commit is visible. So, reading H first and then the set W of
    transactions holding that lock (``pg_locks``, by virtual transaction id, unique over
    time): once none of W holds the lock any more, every seq <= H is settled. Candidates
    (H, W) are taken at each read and cleared in order; a batch takes a few ms, so the
    horizon is normally the last seq drawn at the start of the read.

    Not chosen: ``pg_snapshot_xmin`` alone. A transaction gets its xid at its first row
    write, *after* the identity value was drawn (a plain INSERT, or COPY's first rows),
    so for a moment a seq is out while its transaction has no xid any snapshot could
    wait on. A settle delay (wait N s, then give up on a gap) is a bet on timing: a
    commit delayed past N s (an fsync stall) would be skipped for good.

    Assumes what the migration creates: the identity draws one value at a time (CACHE 1;
    with a per-session cache a later transaction could commit a value below H) and
    nobody inserts an explicit seq. A cache > 1 is refused (the feed shows why).

    A writer that keeps its transaction open holds the horizon back: the dashboard falls
    behind and says so (``waiting_s``), it never skips. Each pass reads ``pg_locks``
    (the lock manager's state, briefly) at most ``1 + HORIZON_POLLS`` times.

    The connection is the dashboard's own (``autocommit``, ``default_transaction_read_only``),
    opened on the tail's thread at the first read.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Connection[TupleRow] | None = None  # created on the tail's thread
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "lijian-dashboard-tail")
        self._entries_oid = 0
        self._seq_oid = 0
        self._candidates: collections.deque[tuple[int, frozenset[str]]] = collections.deque()
        self.horizon = 0  # every seq <= horizon is settled
        self.latest_seq = 0  # the last seq drawn, as of the last read
        self.writers = 0  # transactions holding the horizon back at the last read
        self._waiting_since: float | None = None

    # ------------------------------------------------------------- connection
    def _connect(self) -> Connection[TupleRow]:
        if self._conn is not None:
            return self._conn
        import psycopg

        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lijian-dashboard",
        )
        try:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            row = conn.execute(
                "SELECT 'entries'::regclass::oid, s.seqrelid::oid, s.seqcache FROM pg_sequence s"
                " WHERE s.seqrelid = pg_get_serial_sequence('entries', 'seq')::regclass"
            ).fetchone()
            if row is None:
                raise TailReadError("entries.seq is not an identity: no sequence to follow")
            if int(row[2]) != 1:
                raise TailReadError(
                    f"entries.seq caches {row[2]} values per session: a later transaction "
                    "could commit below the horizon, so the dashboard cannot follow it "
                    "(ALTER TABLE entries ALTER seq SET CACHE 1)"
                )
            self._entries_oid, self._seq_oid = int(row[0]), int(row[1])
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _run(self, fn: Callable[[Connection[TupleRow]], T]) -> T:
        """``fn(connection)`` on this thread; a failed connection is dropped (re-opened by
        the next call)."""
        import psycopg

        try:
            out = fn(self._connect())
        except psycopg.Error as exc:
            self._close()
            raise TailReadError(f"{type(exc).__name__}: {exc}") from exc
        return out

    # ---------------------------------------------------------------- horizon
    def _writers(self, conn: Connection[TupleRow]) -> frozenset[str]:
        rows = conn.execute(_WRITERS_SQL, (self._entries_oid,)).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def _advance(self, conn: Connection[TupleRow]) -> None:
        """Move the horizon as far as the writers allow (see the class docstring)."""
        cur = conn.execute("SELECT pg_sequence_last_value(%s::regclass)", (self._seq_oid,))
        row = cur.fetchone()
        assert row is not None  # a function's SELECT: always one row
        last = int(row[0] or 0)  # NULL: no value drawn yet
        self.latest_seq = max(self.latest_seq, last)
        # Read after the last value: any transaction that drew a seq <= last holds the
        # lock now, or has ended.
        writers = self._writers(conn)
        newest = self._candidates[-1][0] if self._candidates else self.horizon
        if last > newest and len(self._candidates) < CANDIDATES_MAX:
            self._candidates.append((last, writers))
        for poll in range(HORIZON_POLLS + 1):
            if poll:
                time.sleep(HORIZON_POLL_S)
                writers = self._writers(conn)
            # A candidate whose writers are all gone is settled, and so is every older
            # one (a writer of an older candidate still running would be in this one's
            # set too): clear them in order.
            while self._candidates and not (self._candidates[0][1] & writers):
                self.horizon = max(self.horizon, self._candidates.popleft()[0])
            if not self._candidates:
                break
        self.writers = len(self._candidates[0][1] & writers) if self._candidates else 0
        if not self._candidates:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = time.monotonic()

    def waiting_s(self) -> float:
        """How long the horizon has been held back by open writer transactions."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def _page(self, after_seq: int, limit: int) -> list[tuple[int, AnyEntry]]:
        def select(conn: Connection[TupleRow], after: int, n: int) -> list[tuple[int, bytes]]:
            # A snapshot taken after the horizon was settled: every committed entry up to
            # it is visible, and nothing up to it can appear later.
            rows = conn.execute(
                "SELECT seq, body FROM entries WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                (after, self.horizon, n),
            ).fetchall()
            return [(int(s), bytes(b)) for s, b in rows]

        def read(conn: Connection[TupleRow]) -> list[tuple[int, bytes]]:
            rows = select(conn, after_seq, limit) if self.horizon > after_seq else []
            if len(rows) < limit:
                # The settled range is used up: settle more and read on, so that a short
                # page always means "nothing more is settled now" (rolled-back batches
                # can leave a settled range with no entry at all).
                self._advance(conn)
                last = rows[-1][0] if rows else after_seq
                if self.horizon > last:
                    rows += select(conn, last, limit - len(rows))
            return rows

        return [(seq, decode(body)) for seq, body in self._run(read)]

    async def fetch(self, after_seq: int, limit: int = PAGE_ENTRIES) -> list[tuple[int, AnyEntry]]:
        assert 0 < limit <= PAGE_ENTRIES * 10
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._page, after_seq, limit)

    # ---------------------------------------------------------------- close
    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # a broken connection: nothing left to do
                conn.close()

    def close(self) -> None:
        """Close the connection on its own thread, then let the thread go (idempotent)."""
        try:
            self._thread.submit(self._close)
        except RuntimeError:  # already shut down
            return
        self._thread.shutdown(wait=False)


def open_tail(store: object) -> SqliteEntryTail | PostgresEntryTail:
    """The tail for the engine's store: a SQLite file or a PostgreSQL database."""
    from lijian.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteEntryTail(store.path)
    from lijian.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        return PostgresEntryTail(store.url)
    raise TypeError(f"no dashboard tail for {type(store).__name__}")
