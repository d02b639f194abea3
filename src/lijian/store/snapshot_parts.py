"""A snapshot stored in parts, the same way in both stores.

A snapshot of a city's ledger is hundreds of MB. Written as one row it holds the store's
write lock (SQLite) or one transaction (PostgreSQL) for seconds while the writer's next
commit waits behind it. Written in parts of ``PART_BYTES``, each in its own short
transaction (not synced: the last one's synced commit covers them), commits interleave
with it; a last small transaction marks it complete (a ``snapshots`` row with an empty
body) and drops the older ones. A snapshot whose mark is missing (the process died while
writing it) is invisible, and its parts are dropped by the next one that completes.

Whole-body rows (ledgers written before parts) are still read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

PART_BYTES = 1024 * 1024  # one part's transaction: a few ms, unsynced (see the stores)
PARTS_MAX = 16_384  # 16 GiB: far beyond any ledger one process can hold

# The newest mark with its parts, in part order; one statement, so one consistent view.
# The mark is found by its key, not by a subquery in FROM: SQLite then reads the parts in
# their primary key's order, where it sorted them through a temporary b-tree before (1.5 s
# of a 182 MB snapshot's 1.7 s read, measured; 0.2-0.4 s now).
LATEST_SNAPSHOT_SQL = (
    "SELECT s.seq, s.body, p.part, p.body"
    " FROM snapshots AS s LEFT JOIN snapshot_parts AS p ON p.seq = s.seq"
    " WHERE s.seq = (SELECT MAX(seq) FROM snapshots)"
    " ORDER BY p.part"
)


def split_parts(body: bytes) -> Iterator[bytes]:
    """``body`` in parts of at most ``PART_BYTES`` (one part for an empty body)."""
    assert len(body) <= PART_BYTES * PARTS_MAX, "a snapshot beyond PARTS_MAX parts"
    view = memoryview(body)
    yield bytes(view[:PART_BYTES])
    for start in range(PART_BYTES, len(body), PART_BYTES):
        yield bytes(view[start : start + PART_BYTES])


def joined_snapshot(rows: Sequence[Sequence[Any]]) -> tuple[int, bytes] | None:
    """(seq, body) from the rows of ``LATEST_SNAPSHOT_SQL``; None if there is no snapshot
    or its parts are not 0..n-1 (then recovery replays every entry, which it always may:
    a snapshot is only a cache of the replay)."""
    if not rows:
        return None
    seq, whole = int(rows[0][0]), bytes(rows[0][1])
    if whole:  # a whole-body snapshot, from before parts
        return seq, whole
    numbers = [r[2] for r in rows]
    if numbers != list(range(len(rows))):
        return None
    return seq, b"".join(bytes(r[3]) for r in rows)
