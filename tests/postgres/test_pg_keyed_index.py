"""The ledger's LedgerKeyed entry is found through its partial index (migration 0015),
not by reading the log: what every start's key check asks first."""

from __future__ import annotations

import psycopg

from lijian.core.entries import LedgerKeyed, encode
from lijian.ledger_key import _KEYED_PREFIX, ledger_key_id
from lijian.store import open_store
from lijian.store.migrations import load_migrations
from lijian.store.postgres import first_with_prefix_query


def test_the_index_predicate_is_the_key_entrys_prefix() -> None:
    (mig,) = [m for m in load_migrations() if m.name == "keyed_entry_index"]
    assert f"substring(body FROM 1 FOR {len(_KEYED_PREFIX)})" in mig.sql
    assert f"'\\x{_KEYED_PREFIX.hex()}'::bytea" in mig.sql
    assert encode(LedgerKeyed(7, "k-1")).startswith(_KEYED_PREFIX)


def test_the_key_entry_is_read_through_the_index_among_many(pg_url: str) -> None:
    store = open_store(pg_url)  # migrated
    try:
        assert ledger_key_id(store) is None  # never keyed
        with psycopg.connect(pg_url, autocommit=True) as conn:
            others = [(b"\x95\xa4open" + bytes([i % 256]) * 8,) for i in range(3_000)]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO entries (body) VALUES (%s)", others)
                cur.execute("INSERT INTO entries (body) VALUES (%s)",
                            (encode(LedgerKeyed(7, "k-1")),))  # fmt: skip
                cur.executemany("INSERT INTO entries (body) VALUES (%s)", others[:10])
            conn.execute("ANALYZE entries")
            plan = "\n".join(
                str(r[0]) for r in conn.execute(
                    psycopg.sql.SQL("EXPLAIN ") + first_with_prefix_query(_KEYED_PREFIX)
                )
            )  # fmt: skip
        assert "Index Scan using entries_keyed on entries" in plan, plan
        assert ledger_key_id(store) == "k-1"
    finally:
        store.close()
