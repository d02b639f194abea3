"""The embedded store: one SQLite file, written only by the group-commit writer thread.

Tables
------
``entries``   the append-only ledger (seq, msgpack body): the single source of truth.
``balances``  tranche balances, and ``persons`` per-person used and held, rewritten for
              what each batch touched, in the same transaction: what ``lijian audit``
              compares a replay from zero against.
``campaigns`` the settings each campaign was started with (audit needs them, and a
              campaign's money rules must not change under a running ledger).
``snapshots`` the latest ledger state at some seq (a cache of the replay, for restarts).
``catalog``   campaign goods (platform, sku) → category (R12).
``chain_days`` each campaign's day closes (seq and hash-chain head of its TrancheClosed).
``events``    the outbox of operator events (lijian.events), written in the commit of
              the entries that caused them; ``webhook_cursors`` per receiver.
``nonces``    the nonces of accepted signed requests (http/auth.py), written in the
              commit of the batch that carries their command, pruned once expired: a
              restart reloads them, so a request is never accepted twice.

Each entry row also carries ``chain``: SHA-256 of the previous row's chain and this
row's body (core/chain.py), computed here, in the one writer's commit.

Durability: WAL with ``synchronous=FULL`` by default, so a commit is on disk (fsync of
the WAL) before any request in its batch is acknowledged: a grant survives power loss.
``synchronous=NORMAL`` survives a process crash but not power loss; it is offered for
rehearsals only and must be chosen explicitly.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lijian.core.chain import GENESIS, ChainHead, DayClose, link_all
from lijian.core.entries import AnyEntry, TrancheClosed, decode, encode
from lijian.events.model import NewEvent, StoredEvent
from lijian.store.ledger_lock import LedgerInUse, LedgerLock
from lijian.store.snapshot_parts import LATEST_SNAPSHOT_SQL, joined_snapshot, split_parts

SCHEMA_VERSION = 1
READ_PAGE_ROWS = 50_000  # replay reads the ledger in bounded pages
# A restart reloads at most this many unexpired nonces: the memory's own cap per key
# (http/auth.py) times a few keys; beyond it the oldest are left out, and the memory's
# timestamp floor (raised to the newest left out) refuses them all the same.
NONCES_LOAD_MAX = 8_000_000
NonceRow = tuple[str, str, int, int]  # (key id, nonce, request timestamp s, seen at ms)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, chain BLOB);
-- The LedgerKeyed entry (at most one: its first bytes, lijian.ledger_key._KEYED_PREFIX),
-- found by a start's key check without reading the log (first_body_with_prefix).
CREATE INDEX IF NOT EXISTS entries_keyed ON entries (seq)
    WHERE substr(body, 1, 5) = x'93a36b6579';
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, campaign_id TEXT NOT NULL, type TEXT NOT NULL,
    occurred_ms INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_cursors (receiver TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chain_days (
    campaign_id TEXT NOT NULL, day TEXT NOT NULL, seq INTEGER NOT NULL, head BLOB NOT NULL,
    PRIMARY KEY (campaign_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS balances (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persons (
    campaign_id TEXT NOT NULL, person_id TEXT NOT NULL,
    used_fen INTEGER NOT NULL, held_fen INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, person_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
-- A snapshot in parts (store/snapshot_parts.py): a ``snapshots`` row with an empty body
-- marks it complete; its body is these parts in order.
CREATE TABLE IF NOT EXISTS snapshot_parts (
    seq INTEGER NOT NULL, part INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (seq, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, settings_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog (
    platform TEXT NOT NULL, sku TEXT NOT NULL, category TEXT NOT NULL,
    PRIMARY KEY (platform, sku)
) WITHOUT ROWID;
-- The catalogue's reference prices, one row per change (appended: the history of a
-- SKU's reference price); the last row of a (platform, sku) is in force.
CREATE TABLE IF NOT EXISTS reference_prices (
    platform TEXT NOT NULL, sku TEXT NOT NULL, reference_price_fen INTEGER NOT NULL
);
-- Appended in seen order, no index: one b-tree insert per signed request on the hot
-- path (a key and an index cost 20% of a grant's CPU, measured). The memory refuses a
-- nonce seen twice, so no key is needed; pruning deletes a prefix of the rowids.
CREATE TABLE IF NOT EXISTS nonces (
    key_id TEXT NOT NULL, nonce TEXT NOT NULL, ts_s INTEGER NOT NULL, seen_ms INTEGER NOT NULL
);
"""


class StoreError(RuntimeError):
    pass


def first_with_prefix_query(prefix: bytes) -> str:
    """The body of the first entry starting with ``prefix``: the prefix written as a
    literal (hex digits of bytes, nothing of the caller's text), as the partial index on
    the LedgerKeyed prefix states it, so that SQLite uses that index."""
    return (
        f"SELECT body FROM entries WHERE substr(body, 1, {len(prefix)}) = x'{prefix.hex()}'"
        " ORDER BY seq LIMIT 1"
    )


class SqliteStore:
    """Owns the one write connection. Not thread-safe by design: one writer thread."""

    def __init__(
        self, path: str | Path, synchronous: str = "FULL", read_only: bool = False
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF: {synchronous!r}")
        self.path = str(path)
        self.read_only = read_only
        self.synchronous = synchronous.upper()
        self._lock: LedgerLock | None = None
        self._has_events = True
        if read_only:
            # The offline tools (lijian audit, settle, reconcile): mode=ro, so SQLite itself
            # refuses every write: no schema, no journal-mode change, and no checkpoint of
            # the WAL into the file when this connection closes (a read-write connection
            # that closes last folds the WAL into the file, changing it under an auditor).
            # It reads a file a server has open in WAL mode like any other reader.
            # Without a -wal beside it nobody has the file open (a server keeps its WAL
            # while it runs) and it is read as immutable: otherwise SQLite would leave an
            # empty -wal and -shm behind. changed_since_open() tells if a server started
            # meanwhile (the reads may then be torn).
            p = Path(path).resolve()
            self._opened = _file_state(p)
            uri, self._immutable = read_only_uri(p)
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                        check_same_thread=False, timeout=30.0)  # fmt: skip
            self._check_version()
        else:
            # One writing process per ledger (ledger_lock.py), checked before a byte is
            # written: a second server or sandbox on this file is refused, not merged in.
            try:
                self._lock = LedgerLock(self.path)
            except LedgerInUse as exc:
                raise StoreError(str(exc)) from None
            # check_same_thread=False: the connection is created here and then used only
            # by the writer thread; the engine guarantees a single user at a time.
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._create_schema(synchronous)
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        self.last_seq: int = int(row[0])
        self.lock = threading.Lock()
        self.chain, self.day_closes = self._load_chain()
        self.last_event_seq = 0
        if not read_only or self._has_events:
            row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            self.last_event_seq = int(row[0])
        self._reader: sqlite3.Connection | None = None  # events read by other threads
        self._reader_lock = threading.Lock()

    def _create_schema(self, synchronous: str) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_SCHEMA)
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(entries)")}
        if "chain" not in cols:  # a file from before the hash chain: see backfill_chain
            self.conn.execute("ALTER TABLE entries ADD COLUMN chain BLOB")
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.conn.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    def _check_version(self) -> None:
        """A read-only open changes nothing: a file of another version is refused."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        # (events and webhook_cursors may be missing: a ledger from before the outbox)
        missing = {"meta", "entries", "chain_days", "balances", "persons", "snapshots",
                   "campaigns", "catalog"} - tables  # fmt: skip
        if missing:
            no = ", ".join(sorted(missing))
            raise StoreError(f"{self.path}: not a complete ledger (no {no})")
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(entries)")}
        if "chain" not in cols:
            raise StoreError(f"{self.path}: a ledger from before the hash chain: start "
                             "lijian serve on it once to chain it")  # fmt: skip
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        self._has_events = "events" in tables

    def _load_chain(self) -> tuple[ChainHead, list[DayClose]]:
        row = self.conn.execute(
            "SELECT seq, chain FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        head = (
            ChainHead(0, GENESIS) if row is None else ChainHead(int(row[0]), bytes(row[1] or b""))
        )
        closes = [
            DayClose(c, d, int(s), bytes(h))
            for c, d, s, h in self.conn.execute(
                "SELECT campaign_id, day, seq, head FROM chain_days ORDER BY seq"
            )
        ]
        return head, closes

    def backfill_chain(self) -> int:
        """Chain a ledger written before the hash chain existed (every row without one).
        Only then: a store where some rows have a chain and others not was tampered with,
        and filling the gap would hide it from ``lijian audit``. Returns rows chained."""
        n_null, n_all = self.conn.execute(
            "SELECT COUNT(*) - COUNT(chain), COUNT(*) FROM entries"
        ).fetchone()
        if n_null == 0 or n_null != n_all:
            return 0
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            head = GENESIS
            for seq, body in _pages(c, "SELECT seq, body FROM entries"):
                head = link_all(head, [bytes(body)])[0]
                c.execute("UPDATE entries SET chain=? WHERE seq=?", (head, seq))
                e = decode(bytes(body))
                if type(e) is TrancheClosed:
                    c.execute(
                        "INSERT OR REPLACE INTO chain_days VALUES (?, ?, ?, ?)",
                        (e.campaign_id, e.day, seq, head),
                    )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self.chain, self.day_closes = self._load_chain()
        return int(n_all)

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
        """Write one batch in one transaction (one fsync). Returns the last seq.
        ``events`` (the outbox), receivers' ``cursors`` and accepted requests' ``nonces``
        go into the same transaction; nonces seen before ``nonces_before_ms`` (when > 0)
        are deleted there: they have expired."""
        seq0 = self.last_seq
        bodies = [encode(e) for e in entries]
        chains = link_all(self.chain.head, bodies)
        rows = [(seq0 + i + 1, b, h) for i, (b, h) in enumerate(zip(bodies, chains, strict=True))]
        closes = [
            DayClose(e.campaign_id, e.day, seq0 + i + 1, chains[i])
            for i, e in enumerate(entries)
            if type(e) is TrancheClosed
        ]
        seq1 = seq0 + len(rows)
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                c.executemany("INSERT INTO entries (seq, body, chain) VALUES (?, ?, ?)", rows)
            c.executemany(
                "INSERT OR REPLACE INTO chain_days VALUES (?, ?, ?, ?)",
                ((d.campaign_id, d.day, d.seq, d.head) for d in closes),
            )
            c.executemany(
                "INSERT INTO balances (key, value, seq) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value, seq=excluded.seq",
                ((k, v, seq1) for k, v in balances),
            )
            c.executemany(
                "INSERT INTO persons (campaign_id, person_id, used_fen, held_fen, seq) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(campaign_id, person_id) DO UPDATE SET "
                "used_fen=excluded.used_fen, held_fen=excluded.held_fen, seq=excluded.seq",
                ((c_, p_, u, h, seq1) for c_, p_, u, h in persons),
            )
            c.executemany(
                "INSERT INTO catalog (platform, sku, category) VALUES (?, ?, ?) "
                "ON CONFLICT(platform, sku) DO UPDATE SET category=excluded.category",
                catalog_rows,
            )
            c.executemany("INSERT INTO reference_prices VALUES (?, ?, ?)", reference_prices)
            ev0 = self.last_event_seq
            c.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                ((ev0 + i + 1, e.campaign_id, e.type.value, e.occurred_ms, e.data_json())
                 for i, e in enumerate(events)),
            )  # fmt: skip
            c.executemany(
                "INSERT INTO webhook_cursors VALUES (?, ?) "
                "ON CONFLICT(receiver) DO UPDATE SET seq=excluded.seq",
                cursors,
            )
            if nonces:
                c.executemany("INSERT INTO nonces VALUES (?, ?, ?, ?)", nonces)
            if nonces_before_ms > 0:
                # Rows are in seen order (one writer, seen times from one clock): the
                # expired ones are the rowids before the first one still valid.
                c.execute(
                    "DELETE FROM nonces WHERE rowid < COALESCE((SELECT rowid FROM nonces"
                    " WHERE seen_ms >= ? ORDER BY rowid LIMIT 1), 1 << 62)",
                    (nonces_before_ms,),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self.last_event_seq += len(events)
        self.last_seq = seq1
        if chains:
            self.chain = ChainHead(seq1, chains[-1])
            self.day_closes.extend(closes)  # read by the public view on the loop thread
        return seq1

    def save_campaign(self, campaign_id: str, settings_json: str) -> None:
        """Record a campaign's settings; refuse to run one whose settings changed."""
        row = self.conn.execute(
            "SELECT settings_json FROM campaigns WHERE id=?", (campaign_id,)
        ).fetchone()
        if row is None:
            self.conn.execute("INSERT INTO campaigns VALUES (?, ?)", (campaign_id, settings_json))
        elif row[0] != settings_json:
            raise StoreError(
                f"campaign {campaign_id!r} in {self.path} was started with other settings; "
                "a running ledger's money rules cannot change (use a new campaign id or db)"
            )

    # ------------------------------------------------------------------ reading
    @contextlib.contextmanager
    def consistent_reads(self) -> Iterator[None]:
        """Every read inside sees one snapshot of the file (a WAL read transaction), so a
        replay and the stored balances agree while the engine keeps writing. Only for a
        store opened to read (``lijian audit``): the engine's own store writes through
        this connection."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    def campaigns(self) -> list[tuple[str, str]]:
        return list(self.conn.execute("SELECT id, settings_json FROM campaigns ORDER BY id"))

    def iter_entries(self) -> Iterator[tuple[int, AnyEntry]]:
        """Every entry in seq order, read in bounded pages."""
        for seq, body in _pages(self.conn, "SELECT seq, body FROM entries"):
            yield seq, decode(body)

    def iter_chain(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """Every ``(seq, body, chain)`` in seq order, read in bounded pages."""
        for seq, body, chain in _pages(self.conn, "SELECT seq, body, chain FROM entries"):
            yield int(seq), bytes(body), None if chain is None else bytes(chain)

    def iter_bodies(self, after_seq: int = 0) -> Iterator[bytes]:
        for _, body in _pages(self.conn, "SELECT seq, body FROM entries", after_seq):
            yield body

    def save_snapshot(self, seq: int, body: bytes) -> None:
        """Keep only the newest snapshot: its parts, then the mark that completes it."""
        n = 0
        for n, part in enumerate(split_parts(body), start=1):
            self.save_snapshot_part(seq, n - 1, part)
        self.finish_snapshot(seq, n)

    def save_snapshot_part(self, seq: int, part: int, body: bytes) -> None:
        """One part, in its own short transaction (commits interleave with the parts).
        Not synced on its own: a part is inert until ``finish_snapshot``, whose synced
        commit makes the whole log up to it durable, parts included."""
        self.conn.execute("PRAGMA synchronous=OFF")
        try:
            with self._immediate() as c:
                c.execute(
                    "INSERT OR REPLACE INTO snapshot_parts VALUES (?, ?, ?)", (seq, part, body)
                )
        finally:
            self.conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def finish_snapshot(self, seq: int, parts: int) -> None:
        """Mark the snapshot at ``seq`` complete (its ``parts`` parts) and drop older ones."""
        assert parts > 0
        with self._immediate() as c:
            c.execute("DELETE FROM snapshot_parts WHERE seq = ? AND part >= ?", (seq, parts))
            c.execute("DELETE FROM snapshot_parts WHERE seq < ?", (seq,))
            c.execute("INSERT OR REPLACE INTO snapshots (seq, body) VALUES (?, ?)", (seq, b""))
            c.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        if "snapshot_parts" not in tables:  # a read-only open of a ledger from before parts
            row = self.conn.execute(
                "SELECT seq, body FROM snapshots ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return (int(row[0]), bytes(row[1])) if row else None
        # One statement: one view of the file, whatever a snapshot being written does.
        return joined_snapshot(self.conn.execute(LATEST_SNAPSHOT_SQL).fetchall())

    def stored_balances(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT key, value FROM balances"))

    def stored_persons(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            (c, p): (u, h)
            for c, p, u, h in self.conn.execute(
                "SELECT campaign_id, person_id, used_fen, held_fen FROM persons"
            )
        }

    def catalog_rows(self) -> Iterator[tuple[str, str, str]]:
        yield from self.conn.execute("SELECT platform, sku, category FROM catalog")

    def reference_prices(self) -> Iterator[tuple[str, str, int]]:
        """Every reference price change, oldest first (the last of a SKU's is in force)."""
        if self.read_only and "reference_prices" not in self._tables():
            return
        yield from self.conn.execute(
            "SELECT platform, sku, reference_price_fen FROM reference_prices ORDER BY rowid"
        )

    def load_nonces(self, since_ms: int) -> tuple[list[NonceRow], dict[str, int]]:
        """The nonces seen at or after ``since_ms``, oldest first (a restart's memory), at
        most ``NONCES_LOAD_MAX`` (the newest); and per key the highest timestamp of those
        left out (the memory refuses requests at or below it, see http/auth.py)."""
        if self.read_only and "nonces" not in self._tables():
            return [], {}
        rows = self.conn.execute(
            "SELECT key_id, nonce, ts_s, seen_ms FROM nonces WHERE seen_ms >= ?"
            " ORDER BY rowid DESC LIMIT ?",
            (since_ms, NONCES_LOAD_MAX),
        ).fetchall()
        rows.reverse()
        floors: dict[str, int] = {}
        if len(rows) == NONCES_LOAD_MAX:
            floors = dict(self.conn.execute(
                "SELECT key_id, MAX(ts_s) FROM nonces WHERE seen_ms >= ? AND seen_ms <= ?"
                " GROUP BY key_id", (since_ms, int(rows[0][3])),
            ).fetchall())  # fmt: skip
        return [(str(k), str(n), int(t), int(s)) for k, n, t, s in rows], floors

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}

    def read_events(self, after_seq: int, limit: int) -> list[StoredEvent]:
        """Events after ``after_seq`` in order, at most ``limit`` (any thread: its own
        read connection, so the delivery task never waits on the writer's)."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            rows = self._reader.execute(
                "SELECT seq, campaign_id, type, occurred_ms, data FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, min(limit, READ_PAGE_ROWS)),
            ).fetchall()
        return [StoredEvent(int(s), str(c), str(t), int(o), str(d)) for s, c, t, o, d in rows]

    def first_body_with_prefix(self, prefix: bytes) -> bytes | None:
        """The body of the first entry (lowest seq) that starts with ``prefix``, found by
        the database (for the LedgerKeyed prefix, through its index)."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            row = self._reader.execute(first_with_prefix_query(prefix)).fetchone()
        return None if row is None else bytes(row[0])

    def range_bodies(self, after_seq: int, to_seq: int) -> list[bytes]:
        """The entry bodies with ``after_seq < seq <= to_seq`` in order (any thread: the
        reader connection, so an evidence bundle never waits on the writer's)."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            rows = self._reader.execute(
                "SELECT body FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq",
                (after_seq, to_seq),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def read_cursors(self) -> dict[str, int]:
        return {str(r): int(s) for r, s in self.conn.execute("SELECT * FROM webhook_cursors")}

    def changed_since_open(self) -> bool:
        """Read-only: did someone write to the file since it was opened as immutable?"""
        if not self.read_only or not self._immutable:
            return False  # a normal reader sees one consistent snapshot
        p = Path(self.path).resolve()
        return _file_state(p) != self._opened or Path(f"{p}-wal").exists()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.conn.close()
        if self._lock is not None:
            self._lock.release()


def read_only_uri(path: Path) -> tuple[str, bool]:
    """The URI that opens ``path`` read-only, and whether it is opened as immutable (no
    -wal beside it: nobody has it open; see SqliteStore's read_only)."""
    p = path.resolve()
    immutable = not Path(f"{p}-wal").exists()
    return f"{p.as_uri()}?mode=ro" + ("&immutable=1" if immutable else ""), immutable


def _file_state(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns


def _pages(conn: sqlite3.Connection, select: str, after_seq: int = 0) -> Iterator[tuple[Any, ...]]:
    """``select`` (of the entries table, seq first) after ``after_seq`` in seq order, in
    bounded pages."""
    last = after_seq
    while True:
        page = conn.execute(f"{select} WHERE seq > ? ORDER BY seq LIMIT ?", (last, READ_PAGE_ROWS))
        rows = page.fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
