"""The stored nonces, on SQLite and PostgreSQL: written with a commit, loaded back from
the last ``ttl`` only, pruned (the table stays bounded), and the memory restored from
them refuses what it held and forgets nothing unexpired."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from lijian.http.auth import NonceMemory
from lijian.store import Store, open_store
from tests.postgres.pgutil import drop_schema, new_schema

TTL_MS = 600_000


@pytest.fixture(params=["sqlite", "pg"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(tmp_path / "n.db")
        yield s
        s.close()
        return
    name = f"n_{uuid.uuid4().hex[:10]}"
    s = open_store(new_schema(name))
    try:
        yield s
    finally:
        s.close()
        drop_schema(name)


def count(store: Store) -> int:
    rows, _ = store.load_nonces(0)
    return len(rows)


def test_stored_nonces_come_back_and_expired_ones_are_pruned(store: Store) -> None:
    t0_ms = 1_800_000_000_000
    old = [("k1", f"old-nonce-{i:08d}", 1_800_000_000, t0_ms + i) for i in range(500)]
    store.commit_batch([], nonces=old)
    assert count(store) == 500
    later_ms = t0_ms + TTL_MS + 250  # the first 250 have expired by then
    new = [("k2", f"new-nonce-{i:08d}", 1_800_000_700, later_ms + i) for i in range(10)]
    store.commit_batch([], nonces=new, nonces_before_ms=later_ms - TTL_MS)
    rows, floors = store.load_nonces(0)
    assert len(rows) == 250 + 10 and floors == {}
    assert rows[0] == old[250] and rows[-1] == new[-1]  # oldest first
    rows, _ = store.load_nonces(later_ms - TTL_MS + 100)
    assert rows[0] == old[350] and len(rows) == 150 + 10

    # Restored 10 ms later: old 250-259 expired meanwhile; 240 old and 10 new remain.
    memory = NonceMemory(clock_s=lambda: (later_ms + 10) / 1000)
    assert memory.restore(*store.load_nonces(later_ms - TTL_MS)) == 250
    assert not memory.is_fresh("k1", "old-nonce-00000300", 1_800_000_000)
    assert not memory.remember("k2", "new-nonce-00000009", 1_800_000_700)
    assert memory.is_fresh("k1", "old-nonce-00000100", 1_800_000_000)  # expired: pruned
    assert memory.remember("k2", "a-fresh-nonce-0001", 1_800_000_700)
