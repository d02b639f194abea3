"""lijian.client without a ledger: the published signature vector (docs/API.md, checked
against the signer and the server's verifier), and the retry rules against a real HTTP
server that answers 503 first (stdlib http.server on a loopback port)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from lijian.client import Credentials, LijianClient, ProblemError, signature_headers
from lijian.http.auth import Authenticator, AuthError, sign
from lijian.http.clients import Client

# The vector published in docs/API.md, "Test vector". Computed once from the signer;
# a change to the signing string breaks this test and every client in the field.
SECRET = b"test-vector-secret"
TS = "1739325600"  # 2025-02-12T10:00:00+08:00
NONCE = "4f1c2a9e8b7d6c5a4f1c2a9e8b7d6c5a"
PUT_PATH = "/v1/campaigns/chengdu-2025-spring/catalog"
PUT_BODY = b'{"sku":"JD-1","category":"home_textiles","platform":"jd"}\n'
PUT_BODY_SHA256 = "16889a3de68af50dd2b8993f647cc5119f8e40005a164e8185d679873bce2b72"
PUT_SIGNATURE = "d3cbea052c934676f5db4df9ddee3c13f771d7c54d2fac9e4a611f7872e6493f"
GET_PATH = "/v1/campaigns/chengdu-2025-spring/settlement?date=2025-02-12"
GET_SIGNATURE = "15956e1b450631a1d841639443fc1d15d5653194226104f84725710d294580b6"


def test_the_published_vector_is_what_the_signer_computes():
    assert sign(SECRET, "PUT", PUT_PATH, TS, NONCE, PUT_BODY) == PUT_SIGNATURE
    assert sign(SECRET, "GET", GET_PATH, TS, NONCE, b"") == GET_SIGNATURE
    import hashlib

    assert hashlib.sha256(PUT_BODY).hexdigest() == PUT_BODY_SHA256
    h = signature_headers(Credentials("vector", SECRET), "PUT", PUT_PATH, PUT_BODY,
                          ts_s=int(TS), nonce=NONCE)  # fmt: skip
    assert h == {
        "X-Lijian-Key": "vector",
        "X-Lijian-Timestamp": TS,
        "X-Lijian-Nonce": NONCE,
        "X-Lijian-Signature": PUT_SIGNATURE,
    }


def _verifier() -> Authenticator:
    return Authenticator(
        {"vector": Client("vector", SECRET, "operator")}, clock_s=lambda: 1739325600.0
    )


def test_the_server_verifier_accepts_the_vector_and_nothing_else():
    auth = _verifier()
    p = auth.precheck(b"vector", TS.encode(), NONCE.encode(), PUT_SIGNATURE.encode())
    assert auth.verify(p, "PUT", PUT_PATH, PUT_BODY_SHA256).key_id == "vector"
    # The same request with the newline stripped (what `curl -d @file` sends) is refused.
    import hashlib

    stripped = hashlib.sha256(PUT_BODY.rstrip(b"\n")).hexdigest()
    auth = _verifier()
    p = auth.precheck(b"vector", TS.encode(), NONCE.encode(), PUT_SIGNATURE.encode())
    with pytest.raises(AuthError) as e:
        auth.verify(p, "PUT", PUT_PATH, stripped)
    assert e.value.code == "bad_signature"
    p = auth.precheck(b"vector", TS.encode(), NONCE.encode(), GET_SIGNATURE.encode())
    assert auth.verify(p, "GET", GET_PATH, hashlib.sha256(b"").hexdigest()).key_id == "vector"


OVERLOADED = (
    b'{"type":"urn:lijian:problem:overloaded","title":"Service Unavailable",'
    b'"status":503,"code":"overloaded","detail":"queue full","errors":[]}'
)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0) to the first ``fail_first`` requests, then 200."""

    fail_first = 2
    seen: list[dict[str, str]] = []  # noqa: RUF012 - one server per test, reset there

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        if len(type(self).seen) <= type(self).fail_first:
            body = OVERLOADED
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/problem+json")
        else:
            body = b'{"upserted": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"seen": [], "fail_first": 2})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


CREDS = Credentials("unionpay", "unionpay-secret")


def test_an_upsert_is_retried_with_a_fresh_nonce_each_time(flaky):
    url, handler = flaky
    with LijianClient(url, CREDS) as api:
        assert api.put_catalog("c", PUT_BODY).upserted == 1
    assert len(handler.seen) == 3
    nonces = {h["x-lijian-nonce"] for h in handler.seen}
    assert len(nonces) == 3  # a nonce is never sent twice


def test_a_redemption_is_retried_with_the_same_idempotency_key(flaky):
    url, handler = flaky
    with LijianClient(url, CREDS) as api:
        r = api.request("POST", "/v1/redemptions", b"{}", "application/json", key="k-1")
    assert r.status_code == 200
    assert [h["idempotency-key"] for h in handler.seen] == ["k-1", "k-1", "k-1"]


def test_a_capture_is_not_retried_after_the_server_answered(flaky):
    url, handler = flaky
    with LijianClient(url, CREDS) as api, pytest.raises(ProblemError) as e:
        api.capture("rd_1")
    assert (e.value.status, e.value.code, e.value.retry_after_s) == (503, "overloaded", 0.0)
    assert len(handler.seen) == 1


def test_retries_are_bounded(flaky):
    url, handler = flaky
    handler.fail_first = 100
    with LijianClient(url, CREDS) as api, pytest.raises(ProblemError) as e:
        api.status("c")
    assert e.value.code == "overloaded"
    assert len(handler.seen) == 4  # the first attempt and RETRIES_MAX = 3 more


def test_an_unreachable_server_raises_a_transport_error():
    with (
        socket_closed_port() as port,
        LijianClient(f"http://127.0.0.1:{port}", CREDS) as api,
        pytest.raises(httpx.ConnectError),
    ):
        api.status("c")


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def cm() -> Iterator[int]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            yield int(s.getsockname()[1])  # bound, not listening: connections are refused

    return cm()
