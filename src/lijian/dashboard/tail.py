"""Reading committed ledger entries after a given seq, in bounded pages, off the loop.

The dashboard follows the ledger the way a replica follows a log: it asks the store
for the entries after the last one it applied. Only committed entries are in the file,
so the dashboard never shows a grant that a crash could take back.

The reader has its own read-only SQLite connection (WAL: readers never block the
writer) and one thread of its own, so neither disk reads nor decoding stall the event
loop; the connection is created, used and closed on that thread only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from pathlib import Path

from lijian.core.entries import AnyEntry, decode

PAGE_ENTRIES = 5_000  # one query; ~5 ms to read and decode on this machine


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
        rows = (
            self._connect()
            .execute(
                "SELECT seq, body FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            .fetchall()
        )
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
