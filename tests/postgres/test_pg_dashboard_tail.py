"""The dashboard's PostgreSQL tail: every committed entry once, in seq order, whatever
order concurrent writers commit in (``lijian.dashboard.tail.PostgresEntryTail``).

Identity values are drawn at insert and become visible at commit, so a writer that drew
seq 10 can commit after one that drew 11; a reader of ``seq > last`` would step over 10
for good. These tests hold transactions open on purpose, roll some back, and race many
writers against the tail.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import psycopg
import pytest

from lijian.core.entries import SoldOut, encode
from lijian.dashboard.tail import PostgresEntryTail, TailReadError
from lijian.store.postgres import PostgresStore

pytestmark = pytest.mark.xdist_group("postgres")


def body(n: int) -> bytes:
    return encode(SoldOut(n, "c", f"d{n}"))


def fetch_all(tail: PostgresEntryTail, after: int = 0, limit: int = 5_000) -> list[int]:
    """Every entry the tail hands out now, page by page (seqs)."""

    async def run() -> list[int]:
        out: list[int] = []
        last = after
        while True:
            page = await tail.fetch(last, limit)
            out += [s for s, _ in page]
            if len(page) < limit:
                return out
            last = page[-1][0]

    return asyncio.run(run())


@pytest.fixture
def url(pg_url):
    PostgresStore(pg_url).close()  # the schema, by the migrations
    return pg_url


def writer(url: str) -> psycopg.Connection:
    return psycopg.connect(url)


def insert(conn: psycopg.Connection, n: int) -> int:
    row = conn.execute(
        "INSERT INTO entries (node_id, body) VALUES ('t', %s) RETURNING seq", (body(n),)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_seq_committed_late_is_waited_for_not_skipped(url):
    tail = PostgresEntryTail(url)
    slow, fast = writer(url), writer(url)
    try:
        s1 = insert(slow, 1)  # drawn first, committed last
        s2 = insert(fast, 2)
        fast.commit()
        assert s1 < s2
        # What a plain "seq > last" reader sees now: only s2; moving on past it would
        # lose s1 for good.
        naive = psycopg.connect(url, autocommit=True)
        seen = [r[0] for r in naive.execute("SELECT seq FROM entries WHERE seq > 0 ORDER BY seq")]
        assert seen == [s2]
        naive.close()
        assert fetch_all(tail) == []  # s1 is in flight: nothing past it is handed out
        assert tail.horizon < s1 and tail.writers == 1 and tail.waiting_s() > 0
        slow.commit()
        got = fetch_all(tail)
        assert got == [s1, s2]
        assert fetch_all(tail, after=s2) == []  # nothing twice
        assert tail.waiting_s() == 0
        # A gap that never fills (a rolled-back batch) does not hold the tail forever.
        s3 = insert(slow, 3)
        s4 = insert(fast, 4)
        fast.commit()
        assert fetch_all(tail, after=s2) == []
        slow.rollback()
        assert fetch_all(tail, after=s2) == [s4]
        assert s3 < s4
    finally:
        slow.close()
        fast.close()
        tail.close()


def test_an_idle_reader_transaction_does_not_hold_the_horizon(url):
    """Only writers of entries count: an open read (an audit, psql) does not."""
    tail = PostgresEntryTail(url)
    reader = writer(url)
    w = psycopg.connect(url, autocommit=True)
    try:
        reader.execute("SELECT count(*) FROM entries").fetchone()  # stays open
        s = insert(w, 1)
        assert fetch_all(tail) == [s]
    finally:
        reader.close()
        w.close()
        tail.close()


def test_many_writers_committing_out_of_order_lose_and_repeat_nothing(url):
    """Writers insert batches (COPY, the engine's way, and INSERT, a tool's),
    sleep a random while before committing, and roll one in five back; the tail follows
    in small pages meanwhile. It must hand out exactly the committed entries, in order."""
    writers, rounds = 6, 40
    stop = threading.Event()
    errors: list[BaseException] = []
    commits: list[int] = []  # each committed batch's last seq, in commit order
    commits_lock = threading.Lock()

    def write(i: int) -> None:
        rnd = random.Random(i)
        try:
            with psycopg.connect(url) as conn:
                for r in range(rounds):
                    n = rnd.randint(1, 30)
                    if rnd.random() < 0.5:
                        with conn.cursor().copy("COPY entries (node_id, body) FROM STDIN") as cp:
                            for k in range(n):
                                cp.write_row((f"w{i}", body(r * 100 + k)))
                    else:
                        conn.execute(
                            "INSERT INTO entries (node_id, body)"
                            " SELECT %s, b FROM unnest(%s::bytea[]) AS u(b)",
                            (f"w{i}", [body(r * 100 + k) for k in range(n)]),
                        )
                    (last,) = conn.execute(
                        "SELECT currval(pg_get_serial_sequence('entries', 'seq'))"
                    ).fetchone()
                    time.sleep(rnd.random() * 0.03)  # commit order != draw order
                    if rnd.random() < 0.2:
                        conn.rollback()
                    else:
                        with commits_lock:
                            conn.commit()
                            commits.append(int(last))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    tail = PostgresEntryTail(url)
    got: list[int] = []

    async def follow() -> None:
        last = 0
        while not stop.is_set():
            page = await tail.fetch(last, 37)  # small pages: many page boundaries
            for seq, entry in page:
                assert isinstance(entry, SoldOut)
                got.append(seq)
            if page:
                last = page[-1][0]
            else:
                await asyncio.sleep(0.002)
        while True:  # the writers are done: drain
            page = await tail.fetch(last, 37)
            got.extend(s for s, _ in page)
            if not page:
                return
            last = page[-1][0]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()

    def run_follower() -> None:
        try:
            asyncio.run(follow())
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    follower = threading.Thread(target=run_follower)
    follower.start()
    for t in threads:
        t.join(120)
    stop.set()
    follower.join(120)
    tail.close()
    assert not errors, errors
    with psycopg.connect(url) as conn:
        committed = [int(r[0]) for r in conn.execute("SELECT seq FROM entries ORDER BY seq")]
        (drawn,) = conn.execute(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('entries', 'seq'))"
        ).fetchone()
    assert len(committed) > writers * rounds
    assert len(committed) < int(drawn)  # rolled-back batches left gaps
    # The hazard happened: a batch committed after another whose seqs were higher (a
    # "seq > last" reader that saw the first would have stepped over the second).
    assert any(later < max(commits[:i]) for i, later in enumerate(commits) if i), commits
    assert got == committed  # nothing lost, nothing twice, in seq order


def test_a_cached_identity_is_refused_not_followed(url):
    """With a per-session cache a later transaction can commit below the horizon."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ALTER TABLE entries ALTER seq SET CACHE 20")
    tail = PostgresEntryTail(url)
    try:
        with pytest.raises(TailReadError, match="CACHE 1"):
            fetch_all(tail)
    finally:
        tail.close()


def test_the_tail_reads_only_and_reconnects(url):
    tail = PostgresEntryTail(url)
    try:
        w = psycopg.connect(url, autocommit=True)
        s1 = insert(w, 1)
        assert fetch_all(tail) == [s1]
        conn = tail._conn
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO entries (body) VALUES ('x')")
        # The server drops the dashboard's connection: one failed read, then it is back.
        w.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'lijian-dashboard' AND pid <> pg_backend_pid()"
            " AND pid = %s",
            (conn.info.backend_pid,),
        )
        s2 = insert(w, 2)
        with pytest.raises(TailReadError):
            fetch_all(tail, after=s1)
        assert fetch_all(tail, after=s1) == [s2]
        w.close()
    finally:
        tail.close()
