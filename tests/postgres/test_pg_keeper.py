"""The lease keeper process (cluster/keeper.py): it renews while its sequencer's
interpreter is busy, releases when told, ends with its sequencer, and its death is a
lost lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lijian.cluster.keeper import KeptLease, LeaseRefused
from lijian.cluster.lease import Lease
from tests.http.harness import alive
from tests.postgres.pgutil import child_pids, cmdline_has, execute

TTL_S = 0.5
BUSY_TTL_S = 1.5  # where a test needs the lease held: a loaded scheduler never lapses it
WAIT_S = 10.0


def _keeper_pids(parent: int) -> list[int]:
    return [p for p in child_pids(parent) if cmdline_has(p, b"keeper")]


def _busy_without_releasing_the_gil(seconds: float) -> float:
    """One C call that holds the GIL for about ``seconds``, as a snapshot's decode does:
    ``sum`` over a ``range`` runs no bytecode, so no other thread of this interpreter
    runs until it returns. Returns how long it took."""
    # The fastest of a few samples is the machine's speed; load only makes the long call
    # longer than planned, never shorter.
    samples = []
    for _ in range(5):
        t0 = time.monotonic()
        sum(range(1_000_000))
        samples.append(time.monotonic() - t0)
    per_item_s = max(min(samples), 1e-6) / 1_000_000
    t0 = time.monotonic()
    sum(range(int(seconds / per_item_s)))
    return time.monotonic() - t0


def test_renews_while_the_interpreter_is_held_then_releases(pg_url):
    kept = KeptLease(pg_url, "h-busy", "127.0.0.1:1", BUSY_TTL_S)
    assert kept.take(WAIT_S) == 1
    try:
        # Three lease lengths without a bytecode of this interpreter: a renewal thread
        # here would have let the lease lapse twice over.
        assert _busy_without_releasing_the_gil(3 * BUSY_TTL_S) > 2 * BUSY_TTL_S
        other = Lease(pg_url, "h-other", "127.0.0.1:2", BUSY_TTL_S)
        assert other.try_acquire() is None  # still held: renewed meanwhile
        deadline = time.monotonic() + WAIT_S
        while not kept.valid():  # the renewals of the busy time reach this process
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        kept.release()
    assert not kept.valid()
    # Released at once, not lapsed: another takes it without waiting for the TTL.
    assert Lease(pg_url, "h-other", "127.0.0.1:2", 30.0).try_acquire() == 2


def test_refused_while_another_holds_it(pg_url):
    holder = Lease(pg_url, "h-1", "127.0.0.1:1", 30.0)
    assert holder.acquire(wait_s=5) == 1
    kept = KeptLease(pg_url, "h-2", "127.0.0.1:2", 30.0)
    with pytest.raises(LeaseRefused, match=r"served by h-1 at 127\.0\.0\.1:1"):
        kept.take(wait_s=0.5)


def test_a_dead_keeper_is_a_lost_lease(pg_url):
    kept = KeptLease(pg_url, "h-k", "127.0.0.1:1", TTL_S)
    lost = threading.Event()
    why: list[str] = []
    kept.on_deposed = lambda w: (why.append(w), lost.set())
    kept.take(WAIT_S)
    (pid,) = _keeper_pids(os.getpid())
    os.kill(pid, signal.SIGKILL)
    assert lost.wait(WAIT_S)
    assert why == ["the lease keeper stopped"] and not kept.valid()
    kept.release()


def test_a_takeover_is_a_lost_lease(pg_url):
    kept = KeptLease(pg_url, "h-k", "127.0.0.1:1", TTL_S)
    lost = threading.Event()
    why: list[str] = []
    kept.on_deposed = lambda w: (why.append(w), lost.set())
    kept.take(WAIT_S)
    execute(pg_url, "UPDATE sequencer_lease SET epoch = epoch + 1")  # another took it
    assert lost.wait(WAIT_S)
    assert why == ["another sequencer took the lease"]
    kept.release()


CHILD = """
import sys, time
from lijian.cluster.keeper import KeptLease
kept = KeptLease(sys.argv[1], "h-child", "127.0.0.1:1", float(sys.argv[2]))
kept.take(10.0)
print("taken", flush=True)
time.sleep(600)
"""


def test_the_keeper_ends_with_its_sequencer_and_the_lease_lapses(pg_url):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, pg_url, str(BUSY_TTL_S)], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"taken\n"
        (keeper,) = _keeper_pids(child.pid)
        # Stop signals sent to the whole group leave the keeper renewing.
        os.kill(keeper, signal.SIGTERM)
        os.kill(keeper, signal.SIGINT)
        time.sleep(3 * BUSY_TTL_S)
        assert Lease(pg_url, "h-other", "127.0.0.1:2", BUSY_TTL_S).try_acquire() is None
        child.kill()
        child.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while alive(keeper):  # it saw its stdin close, and ended
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Not released (the sequencer died): the lease lapses within its TTL.
        other = Lease(pg_url, "h-other", "127.0.0.1:2", BUSY_TTL_S)
        assert other.acquire(wait_s=WAIT_S) == 2
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_prestarted_keeper_waits_for_its_parameters_then_takes_the_lease(pg_url):
    """A warm spare's keeper (``prestart``): started ahead, it touches nothing until a
    take gives it its parameters; that take uses it rather than a new interpreter."""
    from lijian.cluster import keeper

    keeper.prestart()
    (pid,) = _keeper_pids(os.getpid())
    time.sleep(0.5)
    assert alive(pid)
    # Nothing taken while it waits: another holder could take the lease and give it back.
    probe = Lease(pg_url, "h-probe", "127.0.0.1:3", 30.0)
    assert probe.acquire(wait_s=5) == 1
    probe.release()
    kept = KeptLease(pg_url, "h-warm", "127.0.0.1:1", BUSY_TTL_S)
    try:
        assert kept.take(WAIT_S) == 2
        assert _keeper_pids(os.getpid()) == [pid]  # the prestarted one, no other
    finally:
        kept.release()


def test_a_prestarted_keeper_ends_with_its_process_unused():
    """A spare stopped before it was needed: its keeper sees the end of its stdin and
    exits without ever connecting."""
    from lijian.cluster import keeper

    keeper.prestart()
    proc = keeper._prestarted[0]
    assert proc.stdin is not None
    proc.stdin.close()  # what the spare's death does
    assert proc.wait(WAIT_S) == 0
    keeper._prestarted.clear()


def test_a_keeper_runs_ahead_of_ordinary_processes():
    """A prestarted keeper runs at KEEPER_NICENESS while it waits (its first statement
    sets it, before its imports); where it may not (not root), at its parent's."""
    from lijian.cluster import keeper

    keeper.prestart()
    proc = keeper._prestarted[0]
    try:
        want = keeper.KEEPER_NICENESS if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
        deadline = time.monotonic() + WAIT_S
        while os.getpriority(os.PRIO_PROCESS, proc.pid) != want and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == want
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(WAIT_S) == 0
        keeper._prestarted.clear()


def test_a_keeper_whose_sequencer_is_gone_stops_renewing_without_a_traceback(pg_url):
    """Its sequencer died: writing the next event line breaks the pipe. The keeper stops
    renewing (as at the end of its stdin) instead of raising BrokenPipeError."""
    from lijian.cluster.keeper import _Keeper

    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb") as out:
        kept = _Keeper(
            {"url": pg_url, "holder": "h-gone", "address": "127.0.0.1:4", "ttl_s": 30.0}, out
        )
        kept.say("taken 1 0.0")  # would raise BrokenPipeError (SIGPIPE is ignored by Python)
        assert kept.lease._stop.is_set()
