"""Snapshots taken without stopping the writer: the state encoded in a forked child.

Encoding a city's ledger (hundreds of MB) takes seconds, and msgspec holds the GIL for
the whole of it: on the writer's loop every grant would wait that long. Instead the
writer forks between two batches, when the ledger in memory is exactly what is committed
up to ``seq``. The child holds a copy-on-write image of that instant: it encodes it and
streams the bytes into a pipe, then exits. The parent goes on deciding and committing
at once; the fork itself copies only page tables (tens of ms at a million persons). A
thread of the parent reads the pipe in parts and hands each to the committer thread
(store/snapshot_parts.py), so each part's short transaction takes its turn between
commits, and a last one marks the snapshot complete.

The child touches nothing it shares with the parent but the ledger's memory (read) and
the pipe: no lock, no logger, no database connection, no event loop; it closes every
other file it inherited and leaves with ``os._exit``, whatever happens. A failed or
killed child, or a full disk, is a snapshot not taken (logged): the entries stay the
truth, and the next snapshot or a replay from zero covers it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
from collections.abc import Callable

from lijian.core.ledger import Ledger
from lijian.core.snapshot import encode_snapshot
from lijian.store.snapshot_parts import PART_BYTES, PARTS_MAX

# A child that sends nothing for this long is killed (it encodes at ~100 MB/s).
PART_WAIT_S = 120.0
FD_LIMIT = 65_536  # closerange's bound in the child


class SnapshotFailed(RuntimeError):
    """The child did not deliver a whole snapshot."""


def fork_encoder(ledger: Ledger, seq: int) -> tuple[int, int]:
    """Fork a child that encodes ``ledger`` (as it is now, at ``seq``) into a pipe.

    Returns (child pid, read end). Call between batches, on the loop that owns the ledger.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its outcome is read through the pipe
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C to the group ends it
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, FD_LIMIT)
            gc.disable()  # a collection would touch (and copy) every page for nothing
            view = memoryview(encode_snapshot(ledger, seq))
            while view:
                view = view[os.write(write_fd, view[:PART_BYTES]) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    return pid, read_fd


def save_from_child(
    pid: int,
    read_fd: int,
    save_part: Callable[[int, bytes], None],
    finish: Callable[[int], None],
) -> int:
    """Read the child's snapshot in parts, save each (``save_part(n, body)``), reap the
    child, and complete the snapshot (``finish(parts)``) only if the child succeeded.
    Runs on a thread of its own. Returns the snapshot's size in bytes."""
    total = parts = 0
    try:
        while True:
            body = _read_part(read_fd)
            if not body:
                break
            if parts >= PARTS_MAX:
                raise SnapshotFailed(f"a snapshot of more than {PARTS_MAX} parts")
            save_part(parts, body)
            parts += 1
            total += len(body)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
        status = _reap(pid)
    if status != 0:
        raise SnapshotFailed(f"the snapshot's child exited with status {status}")
    if parts == 0:
        raise SnapshotFailed("the snapshot's child sent nothing")
    finish(parts)
    return total


def _read_part(fd: int) -> bytes:
    """Up to ``PART_BYTES`` from the pipe (fewer only at its end)."""
    chunks: list[bytes] = []
    got = 0
    while got < PART_BYTES:
        ready, _, _ = select.select([fd], [], [], PART_WAIT_S)
        if not ready:
            raise SnapshotFailed(f"the snapshot's child sent nothing for {PART_WAIT_S:.0f} s")
        chunk = os.read(fd, PART_BYTES - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
