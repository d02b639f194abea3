"""The figures `make ha-test` prints: the distribution, the outage of one loss, and where
its seconds went (read from lijian's and PostgreSQL's logs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ha.patroni_failover import Rush, outage_s, serving_since
from tests.ha.timeline import distribution, phases


def test_distribution_is_nearest_rank():
    values = [float(v) for v in range(1, 41)]  # 40 losses: 20 runs of two
    assert distribution(values) == (
        "min 1.00, median 20.50, p90 36.00, p99 40.00, max 40.00 (n=40)"
    )
    assert distribution([]) == "none"


def test_the_outage_is_the_longest_gap_after_the_loss_and_where_it_ended():
    times = [1.0, 2.0, 2.5, 9.0, 9.2]
    assert outage_s(times, at=3.0, until=9.2) == (6.5, 9.0)
    # Not back before the next loss: the gap runs to it, and ended with no grant.
    assert outage_s([1.0, 2.0], at=3.0, until=10.0) == (8.0, None)


def _json_line(ts: str, event: str, **fields: object) -> str:
    return json.dumps({"event": event, "ts": ts, **fields})


def test_phases_are_read_from_the_logs(tmp_path: Path):
    (tmp_path / "serve.log").write_text("\n".join([
        _json_line("2026-12-07T10:00:01.000Z", "ready", campaigns=["c"]),  # before the kill
        _json_line("2026-12-07T10:00:10.200Z", "died", role="gateway-0"),  # not the sequencer
        _json_line("2026-12-07T10:00:10.300Z", "died", role="sequencer"),
        _json_line("2026-12-07T10:00:15.100Z", "lease taken: epoch 2, holder h"),
        _json_line("2026-12-07T10:00:15.500Z", "ready", campaigns=["c"]),
        _json_line("2026-12-07T10:00:15.900Z", "sequencer connection restored"),
        "not json",
    ]) + "\n", encoding="utf-8")  # fmt: skip
    (tmp_path / "patroni1.log").write_text(
        "2026-12-07 10:00:00.500 UTC [7] LOG:  database system is ready to accept connections\n"
        "2026-12-07 10:00:14,900 INFO: promoted self to leader by acquiring session lock\n"
        "2026-12-07 10:00:15.000 UTC [7] LOG:  database system is ready to accept connections\n",
        encoding="utf-8",
    )
    kill_s = 1796637610.0  # 2026-12-07T10:00:10Z
    p = phases(tmp_path, kill_s, kill_s + 30, 1, kill_s + 6.0)
    assert p.promoted == pytest.approx(5.0)
    assert p.died == pytest.approx(0.3)
    assert p.lease == pytest.approx(5.1)
    assert p.ready == pytest.approx(5.5)
    assert p.linked == pytest.approx(5.9)
    assert p.lijian_s == pytest.approx(1.0)


def test_the_service_is_back_after_its_last_pause_not_at_a_straggler():
    """When a loss may come: a 201 answered just after the previous loss (its commit was
    in flight) is not the service back; the first 201 after the last pause is."""
    now = 1000.0
    rush = Rush("http://127.0.0.1:1")
    kill = now - 20.0
    steady = [kill + 9.0 + 0.5 * i for i in range(22)]  # +9.0 ... +19.5 s: back, steady
    for t in (kill - 1.0, kill + 0.05, *steady):
        rush.granted.append((t, "order", "rd_x", 3_720))
    # The straggler at +0.05 s is followed by a pause of 8.95 s: back at +9.0 s.
    assert serving_since(rush, kill, now) == pytest.approx(kill + 9.0)
    # A pause going on now: not serving, whatever came before.
    del rush.granted[-3:]  # the last 201 2 s ago
    assert serving_since(rush, kill, now) is None
    # Nothing since the loss: not back.
    assert serving_since(rush, now, now) is None
