"""One writing process per SQLite ledger: an advisory lock on ``<ledger>.lock``.

SQLite lets any number of processes open a file for writing; two lijian engines on one
ledger would each hold their own balances in memory and grant the same money twice,
and a second ``lijian sandbox`` would delete the running one's ledger under it. So the
process that writes a ledger (a server's engine, ``catalog import``, ``sandbox`` before it
starts afresh) first takes this lock, and one that cannot is refused with one line
before anything is written. Readers (``audit``, ``settle``, ``reconcile``, the dashboard's
tail) open the file read-only and take no lock.

``fcntl.lockf`` (POSIX record locks) belong to the process: the kernel drops them when
the process dies however it dies (kill -9 included), so a stale lock file is never a
problem, and several stores of one process on one file (tests, an import inside the
engine's process) do not refuse each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

PID_BYTES_MAX = 32


class LedgerInUse(RuntimeError):
    """Another process writes this ledger now."""


class LedgerLock:
    """The lock on one ledger, held until ``release`` (or the process's end)."""

    def __init__(self, ledger: str | Path) -> None:
        self.path = Path(f"{ledger}.lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            self._fd = None
            who = f"another process (pid {holder})" if holder else "another process"
            raise LedgerInUse(f"{ledger} is in use by {who}: stop it first") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
