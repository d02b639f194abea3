"""Operations: health, readiness, metrics, OpenAPI and docs, public status, request ids,
graceful shutdown, and ``lijian serve``'s refusals of bad start-up input."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.http.harness import (
    LIJIAN,
    Api,
    Server,
    campaign_doc,
    clients_toml,
    dump_toml,
    metric,
    order,
)
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")


def test_health_and_readiness(api: Api) -> None:
    assert api.get("/healthz", signed=False).json() == {"ok": True}
    r = api.get("/readyz", signed=False)
    assert r.status_code == 200
    assert r.json()["ready"] is True
    assert r.json()["draining"] is False


def test_metrics_count_grants_declines_latency_batches_and_the_tranche(api: Api) -> None:
    api.granted(order())
    api.codes(order(payment_channel="alipay"))
    r = api.get("/metrics", signed=False)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert f'lijian_grants_total{{campaign="{CID}"}}' in text
    assert (
        f'lijian_declines_total{{campaign="{CID}",reason="payment_channel_not_supported"}}' in text
    )
    assert (
        'lijian_http_request_duration_seconds_bucket{le="0.005",route="POST /v1/redemptions"}'
        in text
    )
    assert "lijian_writer_batch_entries_bucket" in text
    assert "lijian_writer_commit_seconds_count" in text
    remaining = api.status()["today"]["remaining_fen"]
    assert metric(text, f'lijian_tranche_remaining_fen{{campaign="{CID}"}}') == remaining


def test_unknown_campaigns_do_not_grow_metric_labels(api: Api) -> None:
    api.codes(order(campaign_id="made-up-campaign-id"))
    text = api.get("/metrics", signed=False).text
    assert "made-up-campaign-id" not in text
    assert 'lijian_declines_total{campaign="other",reason="campaign_not_found"}' in text


def test_the_openapi_document_describes_every_endpoint(api: Api) -> None:
    doc = api.get("/openapi.json", signed=False).json()
    assert doc["openapi"] == "3.1.0"
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {
        ("POST", "/v1/quotes"),
        ("POST", "/v1/redemptions"),
        ("GET", "/v1/redemptions/{redemption_id}"),
        ("POST", "/v1/redemptions/{redemption_id}/capture"),
        ("POST", "/v1/redemptions/{redemption_id}/void"),
        ("POST", "/v1/redemptions/{redemption_id}/refunds"),
        ("GET", "/v1/campaigns"),
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/{campaign_id}"),
        ("GET", "/v1/campaigns/{campaign_id}/status"),
        ("GET", "/v1/campaigns/{campaign_id}/persons/{person_id}"),
        ("PUT", "/v1/campaigns/{campaign_id}/catalog"),
        ("GET", "/v1/campaigns/{campaign_id}/settlement"),
        ("GET", "/v1/campaigns/{campaign_id}/audit"),
        ("GET", "/v1/campaigns/{campaign_id}/evidence"),
        ("POST", "/v1/admin/clock"),
        ("GET", "/v1/admin/events"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/public/campaigns/{campaign_id}"),
        # Running a live campaign
        ("POST", "/v1/campaigns/{campaign_id}/pause"),
        ("POST", "/v1/campaigns/{campaign_id}/resume"),
        ("POST", "/v1/campaigns/{campaign_id}/amendments"),
        ("GET", "/v1/campaigns/{campaign_id}/amendments"),
        ("POST", "/v1/campaigns/{campaign_id}/amendments/{amendment_id}/approve"),
        ("POST", "/v1/campaigns/{campaign_id}/amendments/{amendment_id}/reject"),
        ("POST", "/v1/campaigns/{campaign_id}/blocks"),
        ("GET", "/v1/campaigns/{campaign_id}/blocks"),
        ("POST", "/v1/campaigns/{campaign_id}/blocks/{block_id}/lift"),
        ("GET", "/v1/campaigns/{campaign_id}/changes"),
        ("GET", "/v1/campaigns/{campaign_id}/risk"),
        # Claimed vouchers
        ("POST", "/v1/campaigns/{campaign_id}/claims"),
        ("GET", "/v1/vouchers/{voucher_id}"),
        ("GET", "/v1/campaigns/{campaign_id}/persons/{person_id}/vouchers"),
        ("GET", "/v1/campaigns/{campaign_id}/risk/queue"),
        ("POST", "/v1/campaigns/{campaign_id}/risk/{flag_id}/review"),
    }
    order_schema = doc["components"]["schemas"]["Order"]
    assert order_schema["additionalProperties"] is False
    assert "items" in order_schema["required"]


def test_the_docs_page_is_served_without_a_cdn(api: Api) -> None:
    page = api.get("/docs", signed=False)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "http" not in page.text.replace("/openapi.json", "").split("<body>")[1].split("src=")[0]
    for src in ("/docs/static/swagger-ui-bundle.js", "/docs/static/docs-init.js"):
        assert src in page.text
        assert api.get(src, signed=False).status_code == 200
    assert api.get("/docs/static/swagger-ui.css", signed=False).status_code == 200


def test_the_docs_send_requests_to_the_server_they_came_from(api: Api) -> None:
    """No port of its own: "Try it out" goes to whatever host and port served /docs."""
    doc = api.get("/openapi.json", signed=False).json()
    assert doc["servers"] == [{"url": "/", "description": "this server"}]
    for path in ("/docs", "/openapi.json", "/docs/static/docs-init.js"):
        assert "8000" not in api.get(path, signed=False).text, path


def test_public_status_is_cacheable_and_has_no_personal_data(api: Api) -> None:
    r = api.get(f"/public/campaigns/{CID}", signed=False)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=1"
    body = r.json()
    assert set(body) == {"campaign_id", "name", "state", "today", "next_release_at",
                         "chain", "days"}  # fmt: skip
    # The ledger's hash chain after its last entry; no day of the campaign has closed yet.
    assert set(body["chain"]) == {"seq", "head"} and len(body["chain"]["head"]) == 64
    assert body["chain"]["seq"] > 0 and body["days"] == []
    assert set(body["today"]) == {"date", "opens_at", "closes_at", "remaining_fen", "sold_out_at"}
    assert body["today"]["remaining_fen"] == api.status()["today"]["remaining_fen"]
    r = api.get("/public/campaigns/nope", signed=False)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_request_ids_are_echoed_or_made(api: Api) -> None:
    r = api.get("/healthz", signed=False, headers={"X-Request-Id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    a = api.get("/healthz", signed=False).headers["x-request-id"]
    b = api.get("/healthz", signed=False).headers["x-request-id"]
    assert a and b and a != b


def test_every_request_has_one_access_line_with_its_request_id(server: Server, api: Api) -> None:
    api.redeem(order(), headers={"X-Request-Id": "trace-access-1"})
    api.get("/healthz", signed=False, headers={"X-Request-Id": "trace-access-2"})
    # The access line is written once the response has gone: wait for it (bounded).
    deadline = time.monotonic() + 5.0
    while True:
        text = server.log_path.read_text()
        lines = [json.loads(x) for x in text.splitlines() if "trace-access" in x]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    # Sorted: with two gateways each writes its own line when its answer has gone, in
    # whichever order the two processes get there.
    lines.sort(key=lambda x: str(x["rid"]))
    assert [(x["rid"], x["route"], x["status"]) for x in lines] == [
        ("trace-access-1", "POST /v1/redemptions", 201),
        ("trace-access-2", "GET /healthz", 200),
    ]
    assert list(lines[0]) == [
        "rid", "method", "path", "route", "status", "ms", "client", "event", "level", "ts",
    ]  # fmt: skip
    assert lines[0]["client"] == "unionpay" and lines[1]["client"] is None


def test_unknown_paths_are_problem_json(api: Api) -> None:
    r = api.get("/nothing/here", signed=False)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_sigterm_drains_and_every_acknowledged_grant_survives(tmp_path: Path) -> None:
    """SIGTERM mid-rush: every 201 survives the restart, and a request whose answer was
    lost in the stop (the connection closed under it, or a 5xx) is asked again with its
    Idempotency-Key, as a platform would: the ledger answers what it decided, once."""
    server = Server(tmp_path / "drain")
    answers: list[int] = []
    unknown: list[tuple[str, dict[str, object]]] = []  # (key, order) with no answer
    lock = threading.Lock()
    started = threading.Event()

    def client() -> None:
        api = Api(server.url)
        try:
            for _ in range(200):
                body, key = order(), uuid.uuid4().hex
                try:
                    status = api.redeem(body, key=key).status_code
                except httpx.TransportError:
                    with lock:
                        unknown.append((key, body))
                    return  # the server closed
                with lock:
                    if status >= 500:  # stopping (503): what it decided is unknown here
                        unknown.append((key, body))
                        return
                    answers.append(status)
                    if len(answers) >= 40:
                        started.set()  # well under way: stop the server mid-stream
        finally:
            api.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(60)
    assert server.stop(signal.SIGTERM) == 0
    for t in threads:
        t.join(30)
    log = server.log_path.read_text()
    assert '"event":"stopped"' in log
    granted = answers.count(201)
    assert granted > 0 and len(unknown) <= len(threads)

    server.start()  # same db: recovery replays the ledger
    try:
        # Asked again by key: a grant the stop committed is answered 201 as it was; one
        # it did not is decided now. Either way it is one grant for one key.
        again = [server.api.redeem(body, key=key).status_code for key, body in unknown]
        assert set(again) <= {201}, again
        st = server.api.status()
        assert st["held_fen"] == (granted + len(again)) * 3_720
        assert server.api.get(f"/v1/campaigns/{CID}/audit", as_="audit").json()["ok"] is True
    finally:
        server.close()


def _serve(
    tmp_path: Path, *extra: str, clients: str | None = None
) -> subprocess.CompletedProcess[str]:
    campaign = tmp_path / "c.toml"
    campaign.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    cf = tmp_path / "clients.toml"
    cf.write_text(clients if clients is not None else clients_toml(), encoding="utf-8")
    cmd = [str(LIJIAN), "serve", "--campaign", str(campaign), "--clients", str(cf)]
    cmd += ["--db", str(tmp_path / "x.db"), "--port", "1", *extra]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_worker_count_out_of_range(tmp_path: Path) -> None:
    for n in ("0", "65"):
        out = _serve(tmp_path, "--workers", n)
        assert out.returncode == 2
        assert "--workers must be 1..64" in out.stderr


def test_serve_refuses_a_bad_clients_file_listing_every_problem(tmp_path: Path) -> None:
    bad = """
[[clients]]
key_id = "a"
secret = "short"
role = "wizard"

[[clients]]
key_id = "b"
secret = "long-enough-secret"
role = "platform"
"""
    out = _serve(tmp_path, clients=bad)
    assert out.returncode == 2
    for text in ("clients[0].secret", "clients[0].role", "clients[1].platform"):
        assert text in out.stderr


def test_serve_refuses_a_bad_clock(tmp_path: Path) -> None:
    out = _serve(tmp_path, "--clock", "manual:2025-02-12T10:00:00")
    assert out.returncode == 2
    assert "--clock" in out.stderr
