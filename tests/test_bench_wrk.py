"""The benchmarks read wrk's report (bench/http_load.py: parse_wrk): rate, percentiles,
the slowest answer and socket errors, in wrk's own units."""

from __future__ import annotations

from bench.http_load import parse_wrk

WRK_OUT = """Running 5s test @ http://127.0.0.1:40001/
  2 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    98.61ms  201.33ms   1.42s    93.12%
    Req/Sec     1.51k   312.40     2.10k    70.00%
  Latency Distribution
     50%   31.62ms
     75%   60.10ms
     90%  150.00ms
     99%    1.21s
  14918 requests in 5.01s, 6.55MB read
  Socket errors: connect 0, read 3, write 0, timeout 17
  Non-2xx or 3xx responses: 2
Requests/sec:   2977.45
Transfer/sec:      1.31MB
"""


def test_wrk_report_is_read_in_milliseconds() -> None:
    r = parse_wrk(WRK_OUT)
    assert (r.rps, r.requests, r.non_2xx, r.socket_errors) == (2977.45, 14918, 2, 20)
    assert (r.p50_ms, r.p99_ms, r.max_ms) == (31.62, 1210.0, 1420.0)
