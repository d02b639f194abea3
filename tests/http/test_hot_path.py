"""The request path's shortcuts give the answers of the plain code they replace.

The hot path verifies signatures from bytes, counts metrics in plain dicts and writes
the access line without structlog's processor chain (see docs/PERFORMANCE.md, "HTTP"):
each is checked here against the general code it stands in for.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from bisect import bisect_left

import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lijian.http import logs
from lijian.http.auth import Authenticator, AuthError, sign
from lijian.http.clients import Client
from lijian.http.logs import access_writer, configure, get_logger
from lijian.http.metrics import LATENCY_BUCKETS_S, LoopCounter, LoopHistogram

CLIENT = Client("unionpay", b"unionpay-secret", "channel")
BODY = b'{"campaign_id":"c","order_id":"O-1"}'


def _both(path_qs: str, signature: str, nonce: str, ts: str) -> list[str]:
    """The outcome of verify and of verify_raw, each on a fresh nonce memory."""
    out = []
    for raw in (False, True):
        auth = Authenticator({"unionpay": CLIENT})
        try:
            p = auth.precheck(b"unionpay", ts.encode(), nonce.encode(), signature.encode())
            body_hex = hashlib.sha256(BODY).hexdigest()
            if raw:
                prefix = f"POST\n{path_qs}\n".encode()
                auth.verify_raw(p, prefix, body_hex.encode())
            else:
                auth.verify(p, "POST", path_qs, body_hex)
            out.append("ok")
        except AuthError as exc:
            out.append(exc.code)
    return out


@pytest.mark.parametrize("path_qs", ["/v1/redemptions", "/v1/x?date=2025-02-12&a=%C3%A9"])
def test_verify_raw_answers_like_verify(path_qs: str) -> None:
    ts, nonce = str(int(time.time())), "n" * 16
    good = sign(CLIENT.secret, "POST", path_qs, ts, nonce, BODY)
    assert _both(path_qs, good, nonce, ts) == ["ok", "ok"]
    assert _both(path_qs, good.upper(), nonce, ts) == ["ok", "ok"]
    other = sign(b"another-secret", "POST", path_qs, ts, nonce, BODY)
    assert _both(path_qs, other, nonce, ts) == ["bad_signature", "bad_signature"]
    wrong_path = sign(CLIENT.secret, "POST", path_qs + "x", ts, nonce, BODY)
    assert _both(path_qs, wrong_path, nonce, ts) == ["bad_signature", "bad_signature"]


def test_verify_raw_remembers_the_nonce() -> None:
    auth = Authenticator({"unionpay": CLIENT})
    ts, nonce = str(int(time.time())), "nonce-0123456789"
    sig = sign(CLIENT.secret, "POST", "/v1/redemptions", ts, nonce, BODY).encode()
    body_hex = hashlib.sha256(BODY).hexdigest().encode()
    p = auth.precheck(b"unionpay", ts.encode(), nonce.encode(), sig)
    assert auth.verify_raw(p, b"POST\n/v1/redemptions\n", body_hex) is CLIENT
    with pytest.raises(AuthError) as e:
        auth.precheck(b"unionpay", ts.encode(), nonce.encode(), sig)
    assert e.value.code == "nonce_reused"


def _exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client adds *_created series to its own metrics; the loop-thread
    # versions do not keep creation times, the rest must be the same text.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_the_loop_metrics_expose_what_prometheus_client_would() -> None:
    mine, theirs = CollectorRegistry(), CollectorRegistry()
    hist = LoopHistogram("lat_seconds", "doc", "route", LATENCY_BUCKETS_S)
    count = LoopCounter("hits", "doc", ["route", "status"])
    mine.register(hist)
    mine.register(count)
    ref_hist = Histogram("lat_seconds", "doc", ["route"], buckets=LATENCY_BUCKETS_S,
                         registry=theirs)  # fmt: skip
    ref_count = Counter("hits", "doc", ["route", "status"], registry=theirs)
    for route, seconds, status in [
        ("POST /v1/redemptions", 0.0004, "200"),
        ("POST /v1/redemptions", 0.0005, "201"),  # on a bound: counts in that bucket
        ("POST /v1/redemptions", 0.03, "200"),
        ("GET /healthz", 12.0, "200"),  # past the last bound: +Inf only
    ]:
        counts, total = hist.child(route)
        counts[bisect_left(hist.bounds, seconds)] += 1
        total[0] += seconds
        count.inc(route, status)
        ref_hist.labels(route).observe(seconds)
        ref_count.labels(route, status).inc()
    assert _exposition(mine) == _exposition(theirs)


def test_the_access_line_is_the_line_structlog_writes() -> None:
    saved = (structlog.get_config(), list(logs._configured), logging.getLogger().handlers[:],
             logging.getLogger().level)  # fmt: skip
    out = io.StringIO()
    configure("info", out)
    try:
        write = access_writer()
        assert write is not None
        log = get_logger()
        for client in ("unionpay", None):
            rid, method, path, route, status, ms = ("ab12-1f", "POST", "/v1/redemptions",
                                                    "POST /v1/redemptions", 200, 0.123)  # fmt: skip
            log.info("request", rid=rid, method=method, path=path, route=route, status=status,
                     ms=ms, client=client)  # fmt: skip
            write(rid, method, path, route, status, ms, client)
        lines = out.getvalue().splitlines()
        assert len(lines) == 4
        same = [re.sub(r'"ts":"[^"]+"', "", x) for x in lines]
        assert same[0] == same[1] and same[2] == same[3]
        keys = list(json.loads(lines[1]))
        assert keys == ["rid", "method", "path", "route", "status", "ms", "client", "event",
                        "level", "ts"]  # fmt: skip
    finally:
        structlog.configure(**saved[0])
        logs._configured[:] = saved[1]
        logging.getLogger().handlers[:] = saved[2]
        logging.getLogger().setLevel(saved[3])
