"""Functional check of one running app: what the benchmark hits must be correct.

python check.py http://127.0.0.1:8001
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
from common import CLIENTS, EXAMPLE_ORDER, sign

PATH = "/v1/redemptions"


def signed_headers(
    body: bytes, nonce: str | None = None, secret: bytes = CLIENTS["unionpay"]
) -> dict[str, str]:
    ts = str(int(time.time()))
    nonce = nonce or uuid.uuid4().hex
    return {
        "content-type": "application/json",
        "x-lijian-key": "unionpay",
        "x-lijian-timestamp": ts,
        "x-lijian-nonce": nonce,
        "x-lijian-signature": sign(secret, "POST", PATH, ts, nonce, body),
        "idempotency-key": uuid.uuid4().hex,
    }


def check(base_url: str) -> None:
    body = json.dumps(EXAMPLE_ORDER, ensure_ascii=False).encode()
    with httpx.Client(base_url=base_url, timeout=5) as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.json() == {"ok": True}, r.text

        nonce = uuid.uuid4().hex
        r = c.post(PATH, content=body, headers=signed_headers(body, nonce))
        assert r.status_code == 201, (r.status_code, r.text)
        got = r.json()
        assert got["status"] == "held" and got["order_id"] == EXAMPLE_ORDER["order_id"], got
        assert got["person_id"] == "p-7f3a9c", got
        # payable = 2*12900 - 1000 = 24800; 15 % = 3720; pay = 21080 (docs/API.md's quote example)
        assert (got["payable_fen"], got["discount_fen"], got["pay_fen"], got["capped"]) == (
            24800,
            3720,
            21080,
            False,
        ), got
        assert set(got) >= {"id", "expires_at", "tranche_date", "campaign_id", "platform"}, got

        r = c.post(PATH, content=body, headers=signed_headers(body, nonce))
        assert r.status_code == 401, ("reused nonce", r.status_code, r.text)
        r = c.post(PATH, content=body, headers=signed_headers(body, secret=b"wrong"))
        assert r.status_code == 401, ("bad signature", r.status_code, r.text)
        h = signed_headers(body)
        del h["x-lijian-signature"]
        r = c.post(PATH, content=body, headers=h)
        assert r.status_code == 401, ("missing signature", r.status_code, r.text)

        bad = json.loads(body)
        bad["device_location"]["crs"] = "mercator"
        bad_body = json.dumps(bad).encode()
        r = c.post(PATH, content=bad_body, headers=signed_headers(bad_body))
        assert r.status_code in (400, 422), ("bad crs", r.status_code, r.text)
        h = signed_headers(body)
        del h["idempotency-key"]
        r = c.post(PATH, content=body, headers=h)
        assert r.status_code in (400, 422), ("no idempotency key", r.status_code, r.text)


if __name__ == "__main__":
    check(sys.argv[1])
    print("ok", sys.argv[1])
