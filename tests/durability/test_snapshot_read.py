"""The newest snapshot is read in one statement, its parts in their key's order: SQLite
walks the parts' primary key instead of sorting a city's snapshot (hundreds of MB)
through a temporary b-tree, and the parts still come back whole and in order."""

from __future__ import annotations

import lijian.store.snapshot_parts as parts
from lijian.store import open_store
from lijian.store.snapshot_parts import LATEST_SNAPSHOT_SQL


def test_parts_are_read_in_order_without_a_sort(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "PART_BYTES", 7)  # many parts of a small body
    store = open_store(tmp_path / "l.db")
    try:
        old, body = bytes(range(40)), bytes(range(200, 256)) * 3
        store.save_snapshot(5, old)
        store.save_snapshot(9, body)
        assert store.latest_snapshot() == (9, body)
        plan = " ".join(
            str(r[-1]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + LATEST_SNAPSHOT_SQL)
        )
        assert "SEARCH p USING PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, plan
        rows = store.conn.execute(LATEST_SNAPSHOT_SQL).fetchall()
        assert [r[2] for r in rows] == list(range(-(-len(body) // 7)))
    finally:
        store.close()


def test_no_snapshot_reads_as_none(tmp_path):
    store = open_store(tmp_path / "l.db")
    try:
        assert store.latest_snapshot() is None
    finally:
        store.close()
