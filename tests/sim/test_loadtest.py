"""``lijian loadtest``: signed requests, bounded runs, loopback only, a real server."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx
import pytest

from lijian.http.auth import Authenticator, AuthError, body_sha256_hex
from lijian.http.clients import load_clients, parse_clients
from lijian.sim.config import SimConfig
from lijian.sim.loadtest import (
    LoadConfig,
    LoadtestError,
    arrival_offsets_s,
    check_target,
    pick_clients,
    run_loadtest,
    summary,
)
from tests.sim.conftest import small_settings

CLIENTS = parse_clients(
    {
        "clients": [
            {"key_id": "unionpay", "secret": "unionpay-secret", "role": "channel"},
            {"key_id": "ops", "secret": "operator-secret", "role": "operator"},
        ]
    }
)
TINY = SimConfig(persons=500, catalog_skus=200)


def fake_server(grants: int) -> tuple[httpx.MockTransport, dict[str, int]]:
    """Answers like lijian serve, after checking every signature with the server's own
    Authenticator: the first ``grants`` redemptions are held, the rest sold out."""
    auth = Authenticator(CLIENTS)
    seen = {"verified": 0, "held": 0}
    ids = itertools.count(1)

    def handler(req: httpx.Request) -> httpx.Response:
        h = req.headers
        try:
            p = auth.precheck(
                *(
                    h.get(k, "").encode() or None
                    for k in ("x-lijian-key", "x-lijian-timestamp", "x-lijian-nonce")
                ),
                h.get("x-lijian-signature", "").encode() or None,
            )
            auth.verify(p, req.method, req.url.raw_path.decode(), body_sha256_hex(req.content))
        except AuthError as exc:
            return httpx.Response(401, json={"code": exc.code})
        seen["verified"] += 1
        path = req.url.path
        if req.method == "PUT" and path.endswith("/catalog"):
            return httpx.Response(200, json={"upserted": req.content.count(b"\n")})
        if path == "/v1/redemptions":
            assert req.headers["Idempotency-Key"]
            order = json.loads(req.content)
            assert order["payment_channel"] == "unionpay" and order["items"]
            if seen["held"] >= grants:
                return httpx.Response(
                    200, json={"status": "declined", "reasons": [{"code": "sold_out"}]}
                )
            seen["held"] += 1
            return httpx.Response(201, json={"id": f"rd_{next(ids)}", "status": "held"})
        return httpx.Response(200, json={"status": "captured"})

    return httpx.MockTransport(handler), seen


def test_every_request_is_signed_as_the_contract_says() -> None:
    transport, seen = fake_server(grants=20)
    cfg = LoadConfig(
        url="http://127.0.0.1:9", rate_per_s=80, duration_s=1.0, max_requests=60,
        concurrency=8, sim=TINY,
    )  # fmt: skip
    channel, ops = pick_clients(CLIENTS, None)
    res = asyncio.run(run_loadtest(cfg, small_settings(), channel, ops, transport=transport))
    doc = summary(res)
    assert doc["errors"] == {}
    assert doc["sent"] == doc["answered"] == len(arrival_offsets_s(cfg))
    assert doc["statuses"]["redeem 201"] == 20
    assert doc["declines_by_reason"] == {"sold_out": doc["sent"] - 20}
    # 2 credential checks (channel, operator) + the catalogue + every redemption and capture.
    assert seen["verified"] == 3 + doc["sent"] + sum(
        v["count"] for k, v in doc["latency"].items() if k != "redeem"
    )
    assert {"p50_ms", "p99_ms"} <= set(doc["latency"]["redeem"])


def test_the_arrival_schedule_is_a_bounded_rush() -> None:
    cfg = LoadConfig(url="http://127.0.0.1:9", rate_per_s=500, duration_s=10, max_requests=800)
    offsets = arrival_offsets_s(cfg)
    assert len(offsets) == 800, "max_requests bounds the run"
    assert offsets == sorted(offsets) and offsets[0] >= 0 and offsets[-1] < 10
    first, last = sum(o < 1 for o in offsets), sum(o >= 9 for o in offsets)
    assert first > 3 * last, "more arrive at the opening than at the end"


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://192.168.1.2", "ftp://127.0.0.1/", "127.0.0.1:8000"]
)
def test_only_loopback_urls_are_targets(url: str) -> None:
    with pytest.raises(LoadtestError):
        check_target(url, allow_remote=False)


def test_loopback_urls_are_accepted() -> None:
    check_target("http://127.0.0.1:8000", allow_remote=False)
    check_target("http://[::1]:8000/", allow_remote=False)


def test_limits_are_enforced() -> None:
    cfg = LoadConfig(url="http://127.0.0.1:9", duration_s=10_000, max_requests=0, concurrency=0)
    assert len(cfg.problems()) == 3


@pytest.mark.slow
def test_a_rush_against_a_real_server(tmp_path: Path) -> None:
    """``lijian serve`` in a subprocess on loopback (the HTTP tests' harness)."""
    from tests.http.harness import Server

    server = Server(tmp_path / "srv", catalog=False)
    try:
        clients = load_clients(tmp_path / "srv" / "clients.toml")
        channel, ops = pick_clients(clients, "unionpay")
        cfg = LoadConfig(
            url=server.url, rate_per_s=60, duration_s=2.0, max_requests=120, concurrency=16,
            sim=TINY,
        )  # fmt: skip
        res = asyncio.run(run_loadtest(cfg, small_settings(), channel, ops))
    finally:
        server.close()
    doc = summary(res)
    assert doc["errors"] == {}, doc
    assert doc["answered"] == doc["sent"] > 0
    assert doc["statuses"].get("redeem 201", 0) > 0
    assert doc["statuses"].get("capture 200", 0) > 0
