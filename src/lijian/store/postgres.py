"""The PostgreSQL store: the same interface as :class:`lijian.store.sqlite.SqliteStore`.

Model
-----
The tables are those of the embedded store (see ``migrations/0001_initial.sql``):
``entries`` is the append-only ledger and the single source of truth; ``balances`` and
``persons`` hold the figures each batch touched, written in the batch's transaction, so
``lijian audit`` can compare a replay from zero with them; ``campaigns`` holds the
settings a campaign was started with; ``catalog`` the campaign goods.

One batch of the group-commit writer is one transaction: the entries (``COPY``), the
touched balances and person rows (one ``INSERT … SELECT unnest(…) ON CONFLICT`` each),
and catalogue rows. With ``synchronous = "FULL"`` (the default) the sessions commit with
at least ``synchronous_commit = on``: the commit returns only after PostgreSQL flushed the
WAL (and, with a synchronous standby, after the standby did), so a grant is durable before
it is acknowledged. ``"NORMAL"`` keeps the server's own setting (``off`` there: a crash of
the server may lose the last few hundred ms). A stronger server setting (``remote_apply``)
is never lowered; what is in force and whether a standby is waited for is in
:mod:`lijian.store.pg_durability`.

Connections come from a small ``psycopg_pool.ConnectionPool``: the writer thread takes
one per batch, reads (recovery, audit) take another, so a long replay never blocks a
commit. The schema is brought up to date at start by versioned migrations
(:mod:`lijian.store.migrations`), safe for several processes starting at once.

The URL is a libpq URL; a test or a tenant selects its schema with libpq's ``options``,
e.g. ``postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1234``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from lijian.core.chain import GENESIS, ChainHead, DayClose, link_all
from lijian.core.entries import AnyEntry, TrancheClosed, decode, encode
from lijian.events.model import NewEvent, StoredEvent
from lijian.store import is_postgres_url, shown_db
from lijian.store.migrations import apply_migrations
from lijian.store.pg_durability import DurabilityWatch, SyncCommit, session_commit
from lijian.store.snapshot_parts import LATEST_SNAPSHOT_SQL, joined_snapshot, split_parts
from lijian.store.sqlite import NONCES_LOAD_MAX, NonceRow, StoreError

READ_PAGE_ROWS = 50_000  # replay reads the ledger in bounded pages
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4  # the writer, a reader, and headroom; PostgreSQL allows ~100 in all
POOL_TIMEOUT_S = 30.0  # waiting for a free connection longer than this is a failure
CONNECT_TIMEOUT_S = 10
CATALOG_COPY_ROWS = 1_000_000  # one upload; bounded by the HTTP layer as well


def first_with_prefix_query(prefix: bytes) -> sql.Composed:
    """The body of the first entry starting with ``prefix``. The prefix is a literal, not
    a parameter: the planner then sees the predicate of the partial index on the
    LedgerKeyed prefix (migration 0015) and reads that one row, not the log."""
    return sql.SQL(
        "SELECT body FROM entries WHERE substring(body FROM 1 FOR {n}) = {prefix}"
        " ORDER BY seq LIMIT 1"
    ).format(n=sql.Literal(len(prefix)), prefix=sql.Literal(prefix))


class PostgresStore:
    """The ledger in PostgreSQL. Writes come from one writer thread at a time."""

    def __init__(self, url: str, synchronous: str = "FULL", node_id: str = "a") -> None:
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF: {synchronous!r}")
        if not is_postgres_url(url):
            raise ValueError(f"not a postgresql:// URL: {shown_db(url)!r}")
        self.url = url
        self.path = shown_db(url)  # for messages, like SqliteStore.path
        self._pinned: tuple[int, psycopg.Connection[TupleRow]] | None = None  # consistent_reads
        self.node_id = node_id
        wanted = SyncCommit.ON if sync in ("FULL", "EXTRA") else SyncCommit.OFF
        # What this store's sessions commit with (pg_durability): the server's own
        # synchronous_commit, raised to what ``synchronous`` asks, never lowered (a server
        # set to remote_apply keeps it). Read on each new connection.
        self.commit_mode = wanted

        def configure(conn: psycopg.Connection[TupleRow]) -> None:
            row = conn.execute("SHOW synchronous_commit").fetchone()
            server = SyncCommit.parse(str(row[0])) if row else SyncCommit.ON
            self.commit_mode = session_commit(server, wanted)
            if self.commit_mode != server:
                conn.execute(f"SET synchronous_commit = {self.commit_mode.setting}")
            conn.commit()

        self.pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
            configure=configure,
            open=False,
            name=f"lijian-{node_id}",
        )
        self.pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
                self.migrated = apply_migrations(c)
            with self.pool.connection() as conn:
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        except BaseException:
            self.pool.close()
            raise
        self.last_seq: int = int(row[0]) if row else 0
        self.lock = threading.Lock()
        self.durability_watch: DurabilityWatch | None = None
        # Called first in every writing transaction (a sequencer's lease check,
        # lijian.cluster.lease): raising there rolls the batch back.
        self.fence: Callable[[psycopg.Connection[TupleRow]], None] | None = None
        # The chain continues from the log's last row (also after a takeover).
        self.chain, self.day_closes = self._load_chain()
        with self.pool.connection() as conn:
            row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self.last_event_seq: int = int(row[0]) if row else 0

    def _load_chain(self) -> tuple[ChainHead, list[DayClose]]:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT seq, chain FROM entries ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            days = conn.execute(
                "SELECT campaign_id, day, seq, head FROM chain_days ORDER BY seq"
            ).fetchall()
        head = (
            ChainHead(0, GENESIS) if row is None else ChainHead(int(row[0]), bytes(row[1] or b""))
        )
        return head, [DayClose(str(c), str(d), int(s), bytes(h)) for c, d, s, h in days]

    def backfill_chain(self) -> int:
        """Chain a ledger written before migration 0010 (only when no row has a chain:
        a partly chained ledger was tampered with, see SqliteStore.backfill_chain)."""
        with self.pool.connection() as conn:
            # (most starts: the newest row has its chain, nothing to do, no lock taken)
            newest = conn.execute("SELECT chain FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if newest is None or newest[0] is not None:
            return 0
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE entries IN EXCLUSIVE MODE")
            row = conn.execute("SELECT COUNT(*) - COUNT(chain), COUNT(*) FROM entries").fetchone()
            assert row is not None
            if row[0] == 0 or row[0] != row[1]:
                return 0
            head, last = GENESIS, 0
            while True:
                page = conn.execute(
                    "SELECT seq, body FROM entries WHERE seq > %s ORDER BY seq LIMIT %s",
                    (last, READ_PAGE_ROWS),
                ).fetchall()
                if not page:
                    break
                for seq, body in page:
                    head = link_all(head, [bytes(body)])[0]
                    conn.execute("UPDATE entries SET chain = %s WHERE seq = %s", (head, seq))
                    e = decode(bytes(body))
                    if type(e) is TrancheClosed:
                        conn.execute(
                            "INSERT INTO chain_days VALUES (%s, %s, %s, %s)"
                            " ON CONFLICT (campaign_id, day) DO NOTHING",
                            (e.campaign_id, e.day, seq, head),
                        )
                last = int(page[-1][0])
        self.chain, self.day_closes = self._load_chain()
        return int(row[1])

    # ------------------------------------------------------------------ writing
    def commit_batch(
        self,
        entries: list[AnyEntry],
        balances: Iterable[tuple[str, int]] = (),
        persons: Iterable[tuple[str, str, int, int]] = (),
        catalog_rows: Iterable[tuple[str, str, str]] = (),
        events: Sequence[NewEvent] = (),
        cursors: Iterable[tuple[str, int]] = (),
        nonces: Sequence[NonceRow] = (),
        nonces_before_ms: int = 0,
        reference_prices: Iterable[tuple[str, str, int]] = (),
    ) -> int:
        """Write one batch in one transaction (one WAL flush). Returns the last seq.
        ``events`` (the outbox), receivers' ``cursors`` and accepted requests' ``nonces``
        go into the same transaction (expired nonces deleted, see SqliteStore)."""
        bodies = [encode(e) for e in entries]
        chains = link_all(self.chain.head, bodies)
        with self.pool.connection() as conn, conn.transaction():
            if self.fence is not None:
                self.fence(conn)
            seq1 = self._write(conn, bodies, chains, balances, persons, catalog_rows)
            closes = self._write_closes(conn, entries, chains, seq1)
            self._write_events(conn, events, cursors)
            _write_nonces(conn, nonces, nonces_before_ms)
            _write_reference_prices(conn, reference_prices)
        self.last_event_seq += len(events)
        self.last_seq = max(self.last_seq, seq1)
        if chains:
            self.chain = ChainHead(seq1, chains[-1])
            self.day_closes.extend(closes)  # read by the public view on the loop thread
        return self.last_seq

    def _write_events(
        self,
        conn: psycopg.Connection[TupleRow],
        events: Sequence[NewEvent],
        cursors: Iterable[tuple[str, int]],
    ) -> None:
        ev0 = self.last_event_seq  # one writer: the outbox's seqs are its own
        rows = [(ev0 + i + 1, e.campaign_id, e.type.value, e.occurred_ms, e.data_json())
                for i, e in enumerate(events)]  # fmt: skip
        cur = conn.cursor()
        if rows:
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s)", rows)
        moved = list(cursors)
        if moved:
            cur.executemany(
                "INSERT INTO webhook_cursors VALUES (%s, %s)"
                " ON CONFLICT (receiver) DO UPDATE SET seq = excluded.seq",
                moved,
            )

    def _write_closes(
        self,
        conn: psycopg.Connection[TupleRow],
        entries: list[AnyEntry],
        chains: list[bytes],
        seq1: int,
    ) -> list[DayClose]:
        """The day closes of this batch. One writer: the batch's seqs end at ``seq1`` and
        are consecutive (COPY draws them from the identity in row order, in one session)."""
        seq0 = seq1 - len(entries)
        closes = [
            DayClose(e.campaign_id, e.day, seq0 + i + 1, chains[i])
            for i, e in enumerate(entries)
            if type(e) is TrancheClosed
        ]
        if closes:
            conn.cursor().executemany(
                "INSERT INTO chain_days VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (campaign_id, day) DO UPDATE SET seq = excluded.seq,"
                " head = excluded.head",
                [(d.campaign_id, d.day, d.seq, d.head) for d in closes],
            )
        return closes

    def _write(
        self,
        conn: psycopg.Connection[TupleRow],
        bodies: list[bytes],
        chains: list[bytes],
        balances: Iterable[tuple[str, int]],
        persons: Iterable[tuple[str, str, int, int]],
        catalog_rows: Iterable[tuple[str, str, str]],
    ) -> int:
        seq1 = self.last_seq
        if bodies:
            with conn.cursor().copy("COPY entries (node_id, body, chain) FROM STDIN") as cp:
                for body, chain in zip(bodies, chains, strict=True):
                    cp.write_row((self.node_id, body, chain))
            # currval is this session's last identity value: the batch's last seq.
            row = conn.execute(
                "SELECT currval(pg_get_serial_sequence('entries', 'seq'))"
            ).fetchone()
            assert row is not None
            seq1 = int(row[0])
        bal = dict(balances)  # one row per key: ON CONFLICT may touch a row only once
        if bal:
            conn.execute(
                "INSERT INTO balances (key, value, seq)"
                " SELECT k, v, %s FROM unnest(%s::text[], %s::bigint[]) AS u(k, v)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, seq = excluded.seq",
                (seq1, list(bal), list(bal.values())),
            )
        prs = {(c, p): (u, h) for c, p, u, h in persons}
        if prs:
            conn.execute(
                "INSERT INTO persons (campaign_id, person_id, used_fen, held_fen, seq)"
                " SELECT c, p, u, h, %s"
                " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) AS x(c, p, u, h)"
                " ON CONFLICT (campaign_id, person_id) DO UPDATE SET used_fen = excluded.used_fen,"
                " held_fen = excluded.held_fen, seq = excluded.seq",
                (
                    seq1,
                    [k[0] for k in prs],
                    [k[1] for k in prs],
                    [v[0] for v in prs.values()],
                    [v[1] for v in prs.values()],
                ),
            )
        self._upsert_catalog(conn, catalog_rows)
        return seq1

    def _upsert_catalog(
        self, conn: psycopg.Connection[TupleRow], rows: Iterable[tuple[str, str, str]]
    ) -> None:
        rows = list(rows)
        if not rows:
            return
        assert len(rows) <= CATALOG_COPY_ROWS, "catalogue chunk too large for one batch"
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS catalog_in (platform text, sku text, category text)"
            " ON COMMIT DELETE ROWS"
        )
        with conn.cursor().copy("COPY catalog_in (platform, sku, category) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        # The last row for a key wins, as with the SQLite upsert row by row.
        conn.execute(
            "INSERT INTO catalog (platform, sku, category, txid)"
            " SELECT DISTINCT ON (platform, sku) platform, sku, category,"
            " pg_current_xact_id()::text::bigint"
            " FROM (SELECT *, row_number() OVER () AS n FROM catalog_in) s"
            " ORDER BY platform, sku, n DESC"
            " ON CONFLICT (platform, sku) DO UPDATE SET category = excluded.category,"
            " txid = excluded.txid"
        )

    def save_campaign(self, campaign_id: str, settings_json: str) -> None:
        """Record a campaign's settings; refuse to run one whose settings changed."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO campaigns (id, settings_json) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (campaign_id, settings_json),
            )
            row = conn.execute(
                "SELECT settings_json FROM campaigns WHERE id = %s", (campaign_id,)
            ).fetchone()
        assert row is not None
        if row[0] != settings_json:
            raise StoreError(
                f"campaign {campaign_id!r} in {self.path} was started with other settings; "
                "a running ledger's money rules cannot change (use a new campaign id or db)"
            )

    # ------------------------------------------------------------------ reading
    @contextlib.contextmanager
    def consistent_reads(self) -> Iterator[None]:
        """Every read of this thread inside sees one snapshot (REPEATABLE READ, read only).

        Why: while the engine writes, rows read after the entries reflect batches whose
        entries were not read (an audit failing for nothing), and paging ``seq > last``
        over separate transactions could step over an entry whose commit is late (seq
        values are drawn before commit). In one snapshot both agree:
        a batch writes its entries and its rows in one transaction, and a snapshot holds
        every transaction committed before it, so the entries it shows are causally closed
        (none depends on one it lacks) and the rows are exactly their effect."""
        with self.pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._pinned = (threading.get_ident(), conn)
            try:
                yield
            finally:
                self._pinned = None
                conn.rollback()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[TupleRow]]:
        pinned = self._pinned
        if pinned is not None and pinned[0] == threading.get_ident():
            yield pinned[1]
            return
        with self.pool.connection() as conn:
            yield conn

    def campaigns(self) -> list[tuple[str, str]]:
        with self._reading() as conn:
            rows = conn.execute("SELECT id, settings_json FROM campaigns ORDER BY id").fetchall()
        return [(str(a), str(b)) for a, b in rows]

    def _pages(self, after_seq: int = 0) -> Iterator[list[tuple[int, bytes]]]:
        """Every entry after ``after_seq`` in seq order, one bounded page per round trip."""
        last = after_seq
        while True:
            with self._reading() as conn:
                page = conn.execute(  # in binary: half the read of a text (hex) page
                    "SELECT seq, body FROM entries WHERE seq > %s ORDER BY seq LIMIT %s",
                    (last, READ_PAGE_ROWS),
                    binary=True,
                ).fetchall()
            if not page:
                return
            yield [(int(s), bytes(b)) for s, b in page]
            last = page[-1][0]

    def iter_entries(self) -> Iterator[tuple[int, AnyEntry]]:
        for page in self._pages():
            for seq, body in page:
                yield seq, decode(body)

    def iter_chain(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """Every ``(seq, body, chain)`` in seq order, one bounded page per round trip."""
        last = 0
        while True:
            with self._reading() as conn:
                page = conn.execute(
                    "SELECT seq, body, chain FROM entries WHERE seq > %s ORDER BY seq LIMIT %s",
                    (last, READ_PAGE_ROWS),
                    binary=True,
                ).fetchall()
            if not page:
                return
            for seq, body, chain in page:
                yield int(seq), bytes(body), None if chain is None else bytes(chain)
            last = page[-1][0]

    def iter_bodies(self, after_seq: int = 0) -> Iterator[bytes]:
        for page in self._pages(after_seq):
            for _, body in page:
                yield body

    def save_snapshot(self, seq: int, body: bytes) -> None:
        """Keep only the newest snapshot: its parts, then the mark that completes it."""
        n = 0
        for n, part in enumerate(split_parts(body), start=1):
            self.save_snapshot_part(seq, n - 1, part)
        self.finish_snapshot(seq, n)

    def save_snapshot_part(self, seq: int, part: int, body: bytes) -> None:
        """One part, in its own short transaction (commits interleave with the parts);
        a deposed holder's part raises ``Deposed`` and writes nothing."""
        with self.pool.connection() as conn, conn.transaction():
            if self.fence is not None:
                self.fence(conn)
            # Inert until finish_snapshot, whose commit flushes the WAL up to it, parts
            # included: this one need not wait for its own flush (or a standby's).
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(
                "INSERT INTO snapshot_parts (seq, part, body) VALUES (%s, %s, %s)"
                " ON CONFLICT (seq, part) DO UPDATE SET body = excluded.body",
                (seq, part, body),
            )

    def finish_snapshot(self, seq: int, parts: int) -> None:
        """Mark the snapshot at ``seq`` complete (its ``parts`` parts) and drop older ones;
        a deposed holder's mark raises ``Deposed`` and writes nothing."""
        assert parts > 0
        with self.pool.connection() as conn, conn.transaction():
            if self.fence is not None:
                self.fence(conn)
            conn.execute("DELETE FROM snapshot_parts WHERE seq = %s AND part >= %s", (seq, parts))
            conn.execute("DELETE FROM snapshot_parts WHERE seq < %s", (seq,))
            conn.execute(
                "INSERT INTO snapshots (seq, body) VALUES (%s, %s)"
                " ON CONFLICT (seq) DO UPDATE SET body = excluded.body",
                (seq, b""),
            )
            conn.execute("DELETE FROM snapshots WHERE seq < %s", (seq,))

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        with self._reading() as conn:  # one statement: one view, whatever a writer does
            # In binary: as text the server sends every byte as two hex digits and the
            # client decodes them (3-4x the read's time, measured at 36 MB).
            return joined_snapshot(conn.execute(LATEST_SNAPSHOT_SQL, binary=True).fetchall())

    def stored_balances(self) -> dict[str, int]:
        with self._reading() as conn:
            return {str(k): int(v) for k, v in conn.execute("SELECT key, value FROM balances")}

    def stored_persons(self) -> dict[tuple[str, str], tuple[int, int]]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT campaign_id, person_id, used_fen, held_fen FROM persons"
            ).fetchall()
        return {(str(c), str(p)): (int(u), int(h)) for c, p, u, h in rows}

    def catalog_rows(self) -> Iterator[tuple[str, str, str]]:
        """Every catalogue row, read in bounded pages (keyset on the primary key)."""
        last = ("", "")
        while True:
            with self._reading() as conn:
                page = conn.execute(
                    "SELECT platform, sku, category FROM catalog WHERE (platform, sku) > (%s, %s)"
                    " ORDER BY platform, sku LIMIT %s",
                    (*last, READ_PAGE_ROWS),
                ).fetchall()
            if not page:
                return
            for p, s, c in page:
                yield str(p), str(s), str(c)
            last = (page[-1][0], page[-1][1])

    def reference_prices(self) -> Iterator[tuple[str, str, int]]:
        """Every reference price change, oldest first, read in bounded pages."""
        last = 0
        while True:
            with self._reading() as conn:
                page = conn.execute(
                    "SELECT id, platform, sku, reference_price_fen FROM reference_prices"
                    " WHERE id > %s ORDER BY id LIMIT %s",
                    (last, READ_PAGE_ROWS),
                ).fetchall()
            if not page:
                return
            for _, p, s, v in page:
                yield str(p), str(s), int(v)
            last = int(page[-1][0])

    def load_nonces(self, since_ms: int) -> tuple[list[NonceRow], dict[str, int]]:
        """See SqliteStore.load_nonces."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT key_id, nonce, ts_s, seen_ms FROM nonces WHERE seen_ms >= %s"
                " ORDER BY seen_ms DESC LIMIT %s",
                (since_ms, NONCES_LOAD_MAX),
            ).fetchall()
            rows.reverse()
            floors: dict[str, int] = {}
            if len(rows) == NONCES_LOAD_MAX:
                found = conn.execute(
                    "SELECT key_id, MAX(ts_s) FROM nonces WHERE seen_ms >= %s AND seen_ms <= %s"
                    " GROUP BY key_id",
                    (since_ms, int(rows[0][3])),
                ).fetchall()
                floors = {str(k): int(t) for k, t in found}
        return [(str(k), str(n), int(t), int(s)) for k, n, t, s in rows], floors

    def read_events(self, after_seq: int, limit: int) -> list[StoredEvent]:
        """Events after ``after_seq`` in order, at most ``limit`` (any thread)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT seq, campaign_id, type, occurred_ms, data FROM events"
                " WHERE seq > %s ORDER BY seq LIMIT %s",
                (after_seq, min(limit, READ_PAGE_ROWS)),
            ).fetchall()
        return [StoredEvent(int(s), str(c), str(t), int(o), str(d)) for s, c, t, o, d in rows]

    def first_body_with_prefix(self, prefix: bytes) -> bytes | None:
        """The body of the first entry (lowest seq) that starts with ``prefix``, found by
        the database (a scan of the log that sends one row, not the log)."""
        with self._reading() as conn:
            row = conn.execute(first_with_prefix_query(prefix)).fetchone()
        return None if row is None else bytes(row[0])

    def range_bodies(self, after_seq: int, to_seq: int) -> list[bytes]:
        """The entry bodies with ``after_seq < seq <= to_seq`` in order (any thread)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT body FROM entries WHERE seq > %s AND seq <= %s ORDER BY seq",
                (after_seq, to_seq),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def read_cursors(self) -> dict[str, int]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT receiver, seq FROM webhook_cursors").fetchall()
        return {str(r): int(s) for r, s in rows}

    def watch_durability(self) -> DurabilityWatch:
        """Start reading the primary's durability (``pg_durability``) every second."""
        if self.durability_watch is None:
            self.durability_watch = DurabilityWatch(self.url, self.commit_mode)
            self.durability_watch.start()
        return self.durability_watch

    def close(self) -> None:
        if self.durability_watch is not None:
            self.durability_watch.stop()
        self.pool.close()


def _write_nonces(
    conn: psycopg.Connection[TupleRow], nonces: Sequence[NonceRow], before_ms: int
) -> None:
    if nonces:
        conn.execute(
            "INSERT INTO nonces (key_id, nonce, ts_s, seen_ms)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT DO NOTHING",
            ([n[0] for n in nonces], [n[1] for n in nonces], [n[2] for n in nonces],
             [n[3] for n in nonces]),
        )  # fmt: skip
    if before_ms > 0:
        conn.execute("DELETE FROM nonces WHERE seen_ms < %s", (before_ms,))


def _write_reference_prices(
    conn: psycopg.Connection[TupleRow], rows: Iterable[tuple[str, str, int]]
) -> None:
    rows = list(rows)
    if not rows:
        return
    with conn.cursor().copy(
        "COPY reference_prices (platform, sku, reference_price_fen) FROM STDIN"
    ) as cp:
        for r in rows:
            cp.write_row(r)
