"""On SQLite too, the ledger's LedgerKeyed entry is found through its partial index, not
by reading the log (the PostgreSQL store: tests/postgres/test_pg_keyed_index.py)."""

from __future__ import annotations

import sqlite3

from lijian.core.entries import LedgerKeyed, encode
from lijian.ledger_key import _KEYED_PREFIX, ledger_key_id
from lijian.store import open_store
from lijian.store.sqlite import first_with_prefix_query as sqlite_query


def test_sqlite_reads_the_key_entry_through_its_index_too(tmp_path) -> None:
    db = tmp_path / "l.db"
    store = open_store(db)
    try:
        assert ledger_key_id(store) is None
    finally:
        store.close()
    conn = sqlite3.connect(db)
    try:
        with conn:
            others = [(b"\x95\xa4open" + bytes([i % 256]) * 8,) for i in range(3_000)]
            conn.executemany("INSERT INTO entries (body) VALUES (?)", others)
            conn.execute("INSERT INTO entries (body) VALUES (?)", (encode(LedgerKeyed(7, "k-2")),))
        plan = conn.execute("EXPLAIN QUERY PLAN " + sqlite_query(_KEYED_PREFIX)).fetchall()
    finally:
        conn.close()
    assert any("USING INDEX entries_keyed" in str(row[-1]) for row in plan), plan
    store = open_store(db)
    try:
        assert ledger_key_id(store) == "k-2"
    finally:
        store.close()
