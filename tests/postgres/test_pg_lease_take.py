"""Taking the lease after an outage: valid from the moment it is taken, even when the
take's statement waited (a commit waiting for a synchronous standby, a row lock); a
database that cannot be reached is named host by host, once."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from lijian.cluster.lease import VALID_FRACTION, Deposed, Lease

TTL_S = 2.0


def test_a_slow_take_is_renewed_at_once_so_it_starts_valid(pg_url):
    first = Lease(pg_url, "h-first", "127.0.0.1:1", TTL_S)
    assert first.acquire(5.0) == 1
    first.release()  # the row exists and has lapsed: anyone may take it
    taken: list[int] = []
    late = Lease(pg_url, "h-late", "127.0.0.1:2", TTL_S)
    with psycopg.connect(pg_url) as locker:
        locker.execute("SELECT 1 FROM sequencer_lease WHERE id = 1 FOR UPDATE")
        thread = threading.Thread(target=lambda: taken.append(late.acquire(10.0)))
        started_s = time.monotonic()
        thread.start()
        # The take's statement waits on the row longer than its validity would last.
        time.sleep(TTL_S * VALID_FRACTION + 0.3)
        assert not taken
        locker.commit()
    thread.join(10)
    assert taken == [2]
    # Without the renewal right after it, the take's own start (before the wait) would
    # date the lease, and it would begin invalid: a sequencer answering 503.
    assert late.valid()
    assert late.last_started_s > started_s + TTL_S * VALID_FRACTION
    late.release()


def test_an_unreachable_database_is_named_host_by_host_once(caplog):
    url = "postgresql://postgres:pw-7c1d@127.0.0.1:1,127.0.0.1:2/x?target_session_attrs=read-write"
    lease = Lease(url, "h", "127.0.0.1:3", TTL_S)
    caplog.set_level(logging.WARNING, logger="lijian.lease")
    t0 = time.monotonic()
    with pytest.raises(Deposed) as raised:
        lease.acquire(1.0)
    assert time.monotonic() - t0 < 3.0
    assert "127.0.0.1:1 Connection refused; 127.0.0.1:2 Connection refused" in str(raised.value)
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    # Asked again every 0.2 s, said once (the same reason is not repeated).
    assert len(lines) == 1, lines
    assert "127.0.0.1:1 Connection refused; 127.0.0.1:2 Connection refused" in lines[0]
    assert "pw-7c1d" not in lines[0] + str(raised.value)
