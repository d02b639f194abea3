"""A client generated from /openapi.json by openapi-python-client makes a signed quote,
a redemption, a capture and a catalogue upload against a live server (every topology).

Generators get what they need from the document: an operationId per operation (the
function names below), a title that makes a clean package name (``lijian_api_client``)
and a byte-stream alternative for the NDJSON catalogue, which is otherwise dropped."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from lijian.client import Credentials, signature_headers
from lijian.http.openapi import build_spec
from tests.http.harness import CLIENTS, Server, order

pytestmark = pytest.mark.xdist_group("http-main")
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The generated package, imported (generated once per test session)."""
    root = tmp_path_factory.mktemp("generated")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(build_spec(), ensure_ascii=False), encoding="utf-8")
    r = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(root / "lijian_api_client")],
        capture_output=True, text=True, timeout=300, check=False, cwd=root,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Endpoint will not be generated" not in r.stdout + r.stderr, r.stdout
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("lijian_api_client")
    finally:
        sys.path.remove(str(root))


def signed_client(generated: Any, url: str, key_id: str) -> Any:
    creds = Credentials(key_id, CLIENTS[key_id]["secret"])

    def sign(request: httpx.Request) -> None:
        body = request.read()
        target = request.url.raw_path.decode("ascii")
        request.headers.update(signature_headers(creds, request.method, target, body))

    return generated.AuthenticatedClient(
        base_url=url, token="unused", httpx_args={"event_hooks": {"request": [sign]}}
    )


def test_a_generated_client_quotes_redeems_captures_and_uploads(
    generated: Any, server: Server
) -> None:
    models = importlib.import_module("lijian_api_client.models")
    from lijian_api_client.api.campaigns import put_catalog
    from lijian_api_client.api.orders import capture_redemption, create_redemption, quote_order
    from lijian_api_client.types import File

    sku = f"JD-GEN-{uuid.uuid4().hex[:8]}"
    ops = signed_client(generated, server.url, "ops")
    line = json.dumps({"sku": sku, "category": "fresh_food", "platform": "jd"}) + "\n"
    up = put_catalog.sync_detailed(server.campaign_id, client=ops, body=File(payload=line.encode()))
    assert up.status_code == 200, up.content
    assert up.parsed.upserted == 1

    channel = signed_client(generated, server.url, "unionpay")
    body = models.Order.from_dict(order(sku=sku))
    q = quote_order.sync_detailed(client=channel, body=body)
    assert q.status_code == 200, q.content
    assert (q.parsed.eligible, q.parsed.discount_fen, q.parsed.pay_fen) == (True, 3_720, 21_080)

    key = uuid.uuid4().hex
    held = create_redemption.sync_detailed(client=channel, body=body, idempotency_key=key)
    assert held.status_code == 201, held.content
    assert isinstance(held.parsed, models.RedemptionCreated)
    assert (held.parsed.status, held.parsed.discount_fen) == ("held", 3_720)
    again = create_redemption.sync_detailed(client=channel, body=body, idempotency_key=key)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.parsed.id == held.parsed.id

    done = capture_redemption.sync_detailed(held.parsed.id, client=channel)
    assert done.status_code == 200, done.content
    assert done.parsed.status == "captured"

    wrong = generated.AuthenticatedClient(base_url=server.url, token="unused")
    refused = quote_order.sync_detailed(client=wrong, body=body)  # no signature headers
    assert refused.status_code == 401
    assert refused.parsed.code == "signature_required"
