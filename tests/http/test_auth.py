"""Signed requests, roles and rate limits (docs/API.md, "Authentication")."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from lijian.http.auth import NonceMemory
from tests.http.harness import Api, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")


def assert_401(r: httpx.Response, code: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code
    assert body["status"] == 401
    assert body["type"].endswith(code)


def test_a_signed_request_passes(api: Api) -> None:
    assert api.get(f"/v1/campaigns/{CID}/status").status_code == 200


def test_missing_signature_headers(api: Api) -> None:
    assert_401(api.get(f"/v1/campaigns/{CID}/status", signed=False), "signature_required")


def test_a_bad_signature(api: Api) -> None:
    r = api.get(f"/v1/campaigns/{CID}/status", secret="not-the-secret")
    assert_401(r, "bad_signature")


def test_the_signature_covers_the_body(api: Api) -> None:
    body = json.dumps(order()).encode()
    tampered = json.dumps(order()).encode()
    headers = {"content-type": "application/json"}
    ok = api.http.post(
        "/v1/quotes",
        content=body,
        headers={**headers, **api.signature_headers("POST", "/v1/quotes", body)},
    )
    assert ok.status_code == 200
    r = api.http.post(
        "/v1/quotes",
        content=tampered,
        headers={**headers, **api.signature_headers("POST", "/v1/quotes", body)},
    )
    assert_401(r, "bad_signature")


def test_the_signature_covers_the_method_and_path(api: Api) -> None:
    path = f"/v1/campaigns/{CID}/status"
    h = api.signature_headers("GET", f"/v1/campaigns/{CID}/audit", b"", as_="ops")
    assert_401(api.http.get(path, headers=h), "bad_signature")
    h = api.signature_headers("POST", path, b"", as_="ops")
    assert_401(api.http.get(path, headers=h), "bad_signature")


def test_the_signature_covers_the_query(api: Api) -> None:
    params = {"date": "2025-02-12"}
    r = api.get(f"/v1/campaigns/{CID}/settlement", params=params, as_="ops")
    assert r.status_code == 200
    path = f"/v1/campaigns/{CID}/settlement"
    headers = api.signature_headers("GET", path + "?date=2025-02-12", b"", as_="ops")
    other = api.http.get(path, params={"date": "2025-02-13"}, headers=headers)
    assert_401(other, "bad_signature")


def test_a_reused_nonce(api: Api) -> None:
    nonce = "reused-nonce-" + uuid.uuid4().hex
    assert api.get(f"/v1/campaigns/{CID}/status", nonce=nonce).status_code == 200
    assert_401(api.get(f"/v1/campaigns/{CID}/status", nonce=nonce), "nonce_reused")
    # A nonce is per key: another client may use the same string.
    assert api.get(f"/v1/campaigns/{CID}/status", nonce=nonce, as_="ops").status_code == 200


def test_a_refused_request_does_not_burn_its_nonce(api: Api) -> None:
    nonce = "unburnt-nonce-" + uuid.uuid4().hex
    assert_401(api.get(f"/v1/campaigns/{CID}/status", nonce=nonce, secret="bad"), "bad_signature")
    assert api.get(f"/v1/campaigns/{CID}/status", nonce=nonce).status_code == 200


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space in it 12345"])
def test_a_malformed_nonce(api: Api, nonce: str) -> None:
    assert_401(api.get(f"/v1/campaigns/{CID}/status", nonce=nonce), "nonce_invalid")


@pytest.mark.parametrize("skew_s", [-301, 301, -3600])
def test_a_stale_or_future_timestamp(api: Api, skew_s: int) -> None:
    r = api.get(f"/v1/campaigns/{CID}/status", ts=int(time.time()) + skew_s)
    assert_401(r, "timestamp_out_of_window")


def test_the_timestamp_is_checked_against_the_real_clock_not_the_campaign_clock(
    api: Api,
) -> None:
    campaign_now_s = 1_739_325_600  # 2025-02-12T10:00:00+08:00, the server's manual clock
    assert_401(api.get(f"/v1/campaigns/{CID}/status", ts=campaign_now_s), "timestamp_out_of_window")
    assert api.get(f"/v1/campaigns/{CID}/status", ts=int(time.time()) - 290).status_code == 200


def test_an_unknown_key(api: Api) -> None:
    assert_401(api.get(f"/v1/campaigns/{CID}/status", as_="mallory"), "unknown_key")


@pytest.mark.parametrize(
    ("as_", "method", "path"),
    [
        ("jd", "POST", "/v1/redemptions"),
        ("audit", "POST", "/v1/redemptions"),
        ("jd", "GET", "/v1/redemptions/rd_x"),
        ("jd", "GET", f"/v1/campaigns/{CID}/persons/p-1"),
        ("unionpay", "PUT", f"/v1/campaigns/{CID}/catalog"),
        ("audit", "PUT", f"/v1/campaigns/{CID}/catalog"),
        ("unionpay", "GET", "/v1/campaigns"),
        ("jd", "GET", f"/v1/campaigns/{CID}"),
        ("unionpay", "GET", f"/v1/campaigns/{CID}/settlement?date=2025-02-12"),
        ("jd", "GET", f"/v1/campaigns/{CID}/audit"),
        ("unionpay", "POST", "/v1/admin/clock"),
        ("audit", "POST", "/v1/admin/clock"),
        ("audit", "POST", "/v1/quotes"),
    ],
)
def test_a_role_that_may_not_call_an_endpoint_gets_403(
    api: Api, as_: str, method: str, path: str
) -> None:
    before = api.status()
    r = api.request(method, path, json_body={}, as_=as_, headers={"Idempotency-Key": "k"})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"
    assert api.status() == before


def test_the_auditor_may_read_everything(api: Api) -> None:
    for path in (
        "/v1/campaigns",
        f"/v1/campaigns/{CID}",
        f"/v1/campaigns/{CID}/status",
        f"/v1/campaigns/{CID}/persons/p-1",
        f"/v1/campaigns/{CID}/settlement?date=2025-02-12",
        f"/v1/campaigns/{CID}/audit",
    ):
        assert api.get(path, as_="audit").status_code == 200, path


def test_operations_endpoints_need_no_signature(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", f"/public/campaigns/{CID}"):
        assert api.get(path, signed=False).status_code == 200, path


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(api: Api) -> None:
    # "slow": 0.5 requests/s, burst 2 (harness.CLIENTS).
    before = api.status()
    codes = [api.redeem(order(), as_="slow").status_code for _ in range(4)]
    assert codes[:2] == [201, 201]
    assert codes[2:] == [429, 429]
    r = api.redeem(order(), as_="slow")
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert api.status()["today"]["held_fen"] == before["today"]["held_fen"] + 2 * 3_720
    # Other clients are not affected.
    assert api.redeem(order()).status_code == 201


def test_the_nonce_memory_forgets_after_ten_minutes_and_stays_bounded() -> None:
    now = [1_000.0]
    mem = NonceMemory(ttl_s=600, cap_per_key=3, clock_s=lambda: now[0])
    assert mem.remember("k", "n1", 1_000)
    assert not mem.is_fresh("k", "n1", 1_000)
    now[0] += 601
    assert mem.is_fresh("k", "n1", 1_601)
    for i in range(2, 6):
        assert mem.remember("k", f"n{i}", 1_600 + i)
    assert len(mem) == 3  # the hard cap
    # n2 was forgotten to make room, so its timestamp (and older) is now refused:
    # a forgotten nonce can never be replayed.
    assert not mem.is_fresh("k", "n2", 1_602)
    assert not mem.is_fresh("k", "fresh-but-old", 1_602)
    assert mem.is_fresh("k", "fresh", 1_603)
