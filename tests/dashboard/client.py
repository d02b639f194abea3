"""A signed API client for the dashboard tests (docs/API.md "Authentication")."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx

from lijian.core.categories import CATEGORIES_DEFAULT
from lijian.http.auth import sign

CID = "chengdu-2025-spring"
CATEGORIES = CATEGORIES_DEFAULT


class Signed:
    """httpx with the X-Lijian-* headers of one client."""

    def __init__(self, base_url: str, key_id: str, secret: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        self.key_id = key_id
        self.secret = secret.encode()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        ts = str(int(time.time()))
        nonce = os.urandom(12).hex()
        h = {
            "X-Lijian-Key": self.key_id,
            "X-Lijian-Timestamp": ts,
            "X-Lijian-Nonce": nonce,
            "X-Lijian-Signature": sign(self.secret, method, path, ts, nonce, data),
        }
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        return self.http.request(method, path, content=data, headers=h)

    def close(self) -> None:
        self.http.close()


def catalog_ndjson(platforms: tuple[str, ...] = ("jd", "vip"), per_platform: int = 18) -> bytes:
    lines = [
        json.dumps({"sku": f"{p.upper()}-{i}", "category": CATEGORIES[i % 9], "platform": p})
        for p in platforms
        for i in range(per_platform)
    ]
    return ("\n".join(lines) + "\n").encode()


def order(
    n: int,
    platform: str = "jd",
    sku_index: int = 0,
    price_fen: int = 12_900,
    person: str | None = None,
    quantity: int = 2,
    real_name: bool = True,
) -> dict[str, Any]:
    return {
        "campaign_id": CID,
        "platform": platform,
        "order_id": f"{platform.upper()}-{n:06d}",
        "payment_channel": "unionpay",
        "person": {"id": person or f"p-{n}", "real_name_verified": real_name},
        "device_location": {"lng": 104.0657, "lat": 30.6574, "crs": "gcj02"},
        "delivery_address": {"adcode": "510104"},
        "items": [
            {
                "sku": f"{platform.upper()}-{sku_index}",
                "quantity": quantity,
                "unit_price_fen": price_fen,
                "platform_discount_fen": 0,
            },
            {
                "sku": f"{platform.upper()}-{sku_index + 1}",
                "quantity": 1,
                "unit_price_fen": price_fen // 2,
                "platform_discount_fen": 0,
            },
        ],
    }
