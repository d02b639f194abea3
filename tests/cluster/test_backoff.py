"""A gateway's back-off between attempts to reach a sequencer: it doubles from 0.1 s and
stops at 0.5 s, since the longest wait is added to every failover (a sequencer back
after a PostgreSQL promotion is found at most that long after it serves)."""

from __future__ import annotations

import itertools

from lijian.cluster.gateway_policy import attempts_at_most, backoff_waits_s


def test_waits_double_to_half_a_second_and_stay_there():
    waits = list(itertools.islice(backoff_waits_s(), 8))
    assert waits == [(0.05, 0.1), (0.1, 0.2), (0.2, 0.4)] + [(0.25, 0.5)] * 5


def test_attempts_stay_bounded_however_long_the_outage():
    # 0.05 + 0.1 + 0.2, then one round every 0.25 s at most: 62 in 15 s, 242 a minute.
    assert attempts_at_most(15.0) == 62
    assert attempts_at_most(60.0) == 242
    assert attempts_at_most(15.0, addresses=2) == 124
