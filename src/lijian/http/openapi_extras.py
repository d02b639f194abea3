"""What code generators need on top of the contract's paths (``openapi.py``): an
``operationId`` on every operation, request and response examples (the answers of
``make serve``, as in docs/API.md), ``servers``, and a second, byte-stream media type
for the NDJSON catalogue upload and the TOML settings file of a new campaign, which
generators that know only JSON, forms and octet streams would otherwise drop
(openapi-python-client does). The server accepts ``application/octet-stream`` there as
NDJSON, and as TOML.
"""

from __future__ import annotations

import copy

from lijian.jsonish import Json

TITLE = "lijian API"  # generators name the package after it: lijian-api-client
# Relative: the server that serves this document (OpenAPI 3.0, "Server Object"), so the
# page's "Try it out" goes to the host and port the reader opened /docs on, whatever
# --port, proxy or gateway is in front.
SERVERS = [{"url": "/", "description": "this server"}]

# (method, path) → operationId: stable, snake_case, what generated clients call.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("post", "/v1/quotes"): "quote_order",
    ("post", "/v1/redemptions"): "create_redemption",
    ("get", "/v1/redemptions/{redemption_id}"): "get_redemption",
    ("post", "/v1/redemptions/{redemption_id}/capture"): "capture_redemption",
    ("post", "/v1/redemptions/{redemption_id}/void"): "void_redemption",
    ("post", "/v1/redemptions/{redemption_id}/refunds"): "create_refund",
    ("get", "/v1/campaigns"): "list_campaigns",
    ("post", "/v1/campaigns"): "propose_campaign",
    ("get", "/v1/campaigns/{campaign_id}"): "get_campaign",
    ("get", "/v1/campaigns/{campaign_id}/status"): "get_campaign_status",
    ("get", "/v1/campaigns/{campaign_id}/persons/{person_id}"): "get_person_quota",
    ("put", "/v1/campaigns/{campaign_id}/catalog"): "put_catalog",
    ("get", "/v1/campaigns/{campaign_id}/settlement"): "get_settlement",
    ("get", "/v1/campaigns/{campaign_id}/audit"): "get_audit",
    ("get", "/v1/campaigns/{campaign_id}/risk"): "list_risk_flags",
    ("get", "/v1/campaigns/{campaign_id}/evidence"): "get_evidence",
    ("get", "/v1/admin/events"): "list_events",
    ("post", "/v1/admin/clock"): "set_clock",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("get", "/public/campaigns/{campaign_id}"): "get_public_status",
    ("post", "/v1/campaigns/{campaign_id}/pause"): "pause_campaign",
    ("post", "/v1/campaigns/{campaign_id}/resume"): "resume_campaign",
    ("post", "/v1/campaigns/{campaign_id}/amendments"): "propose_amendment",
    ("get", "/v1/campaigns/{campaign_id}/amendments"): "list_amendments",
    ("post", "/v1/campaigns/{campaign_id}/amendments/{amendment_id}/approve"): "approve_amendment",
    ("post", "/v1/campaigns/{campaign_id}/amendments/{amendment_id}/reject"): "reject_amendment",
    ("post", "/v1/campaigns/{campaign_id}/blocks"): "add_block",
    ("get", "/v1/campaigns/{campaign_id}/blocks"): "list_blocks",
    ("post", "/v1/campaigns/{campaign_id}/blocks/{block_id}/lift"): "lift_block",
    ("get", "/v1/campaigns/{campaign_id}/changes"): "list_changes",
    ("post", "/v1/campaigns/{campaign_id}/claims"): "claim_voucher",
    ("get", "/v1/vouchers/{voucher_id}"): "get_voucher",
    ("get", "/v1/campaigns/{campaign_id}/persons/{person_id}/vouchers"): "list_person_vouchers",
    ("get", "/v1/campaigns/{campaign_id}/risk/queue"): "get_review_queue",
    ("post", "/v1/campaigns/{campaign_id}/risk/{flag_id}/review"): "review_risk_flag",
}

ORDER = {
    "campaign_id": "chengdu-2025-spring",
    "platform": "jd",
    "order_id": "JD-20250212-0001",
    "payment_channel": "unionpay",
    "person": {"id": "p-1001", "real_name_verified": True},
    "device_location": {"lng": 104.065735, "lat": 30.657462, "crs": "gcj02"},
    "delivery_address": {"adcode": "510104", "text": "四川省成都市锦江区红星路三段1号"},
    "items": [
        {"sku": "JD-1", "quantity": 2, "unit_price_fen": 12900, "platform_discount_fen": 1000}
    ],
    "other_government_subsidy": False,
}
_T0 = "2025-02-12T10:00:00+08:00"
HELD = {
    "id": "rd_a7q2mk90000000001", "status": "held", "campaign_id": "chengdu-2025-spring",
    "platform": "jd", "order_id": "JD-20250212-0001", "person_id": "p-1001",
    "payable_fen": 24800, "discount_fen": 3720, "pay_fen": 21080, "capped": False,
    "expires_at": "2025-02-12T10:15:00+08:00", "tranche_date": "2025-02-12",
}  # fmt: skip
CAPTURED = {
    **HELD, "status": "captured", "created_at": _T0, "captured_at": _T0, "ended_at": None,
    "refunded_payable_fen": 0, "card_refunded_fen": 0, "clawed_back_fen": 0, "refunds": [],
}  # fmt: skip
REFUND = {
    "refund_id": "rf-0001", "kind": "partial", "returned_payable_fen": 12400,
    "card_refund_fen": 10540, "clawback_fen": 1860, "quota_restore_fen": 0,
    "quota_restore_at": None, "created_at": _T0,
}  # fmt: skip
TODAY = {
    "date": "2025-02-12", "opens_at": _T0, "closes_at": "2025-02-13T00:00:00+08:00",
    "released_fen": 176470588, "held_fen": 0, "granted_fen": 1860,
    "remaining_fen": 176466868, "sold_out_at": None,
}  # fmt: skip
SETTLEMENT_ROW = {"count": 1, "gmv_fen": 24800, "discount_fen": 3720, "clawback_fen": 1860,
                  "net_subsidy_fen": 1860}  # fmt: skip
CATALOG_NDJSON = (
    '{"sku":"JD-1","category":"home_textiles","platform":"jd"}\n'
    '{"sku":"JD-2","category":"fresh_food","platform":"jd"}\n'
)

# (method, path) → (request example or None, {status: response example}).
EXAMPLES: dict[tuple[str, str], tuple[object, Json]] = {
    ("post", "/v1/quotes"): (ORDER, {"200": {"eligible": True, "discount_fen": 3720,
        "payable_fen": 24800, "pay_fen": 21080, "capped": False, "reasons": []}}),
    ("post", "/v1/redemptions"): (ORDER, {"201": HELD, "200": {"status": "declined",
        "discount_fen": 0, "reasons": [{"code": "sold_out",
        "message": "今日额度已抢完 (sold out today)"}]}}),
    ("get", "/v1/redemptions/{redemption_id}"): (None, {"200": CAPTURED}),
    ("post", "/v1/redemptions/{redemption_id}/capture"): ({}, {"200": CAPTURED}),
    ("post", "/v1/redemptions/{redemption_id}/void"): ({}, {"200": {**CAPTURED,
        "status": "voided", "captured_at": None, "ended_at": _T0}}),
    ("post", "/v1/redemptions/{redemption_id}/refunds"): (
        {"refund_id": "rf-0001", "items": [{"sku": "JD-1", "quantity": 1}]},
        {"201": {**REFUND, "redemption": {**CAPTURED, "status": "partially_refunded",
         "refunded_payable_fen": 12400, "card_refunded_fen": 10540,
         "clawed_back_fen": 1860, "refunds": [REFUND]}}}),
    ("get", "/v1/campaigns/{campaign_id}/status"): (None, {"200": {
        "campaign_id": "chengdu-2025-spring", "now": _T0, "state": "open",
        "budget_fen": 3000000000, "granted_fen": 1860, "held_fen": 0,
        "clawed_back_fen": 1860, "today": TODAY,
        "next_release_at": "2025-02-13T10:00:00+08:00"}}),
    ("get", "/v1/campaigns/{campaign_id}/persons/{person_id}"): (None, {"200": {
        "person_id": "p-1001", "cap_fen": 150000, "used_fen": 3720, "held_fen": 0,
        "remaining_fen": 146280, "pending_restores": [], "redemptions_count": 1}}),
    ("put", "/v1/campaigns/{campaign_id}/catalog"): (CATALOG_NDJSON, {"200": {"upserted": 2}}),
    ("get", "/v1/campaigns/{campaign_id}/settlement"): (None, {"200": {
        "campaign_id": "chengdu-2025-spring", "date": "2025-02-12",
        "platforms": [{"platform": "jd", **SETTLEMENT_ROW}], "totals": SETTLEMENT_ROW}}),
    ("get", "/v1/campaigns/{campaign_id}/audit"): (None, {"200": {
        "campaign_id": "chengdu-2025-spring", "ok": True, "entries": 6, "checks": [
        {"name": "R7 person caps: used + held <= cap", "ok": True, "problems": []}]}}),
    ("post", "/v1/admin/clock"): ({"advance_s": 60}, {"200": {
        "now": "2025-02-12T10:01:00+08:00"}}),
    ("get", "/healthz"): (None, {"200": {"ok": True}}),
    ("get", "/readyz"): (None, {"200": {"ready": True, "draining": False, "queue_depth": 0}}),
}  # fmt: skip


def table(value: object) -> Json:
    """An object of the document (written here, or by msgspec): checked as it is read."""
    assert isinstance(value, dict), value
    return value


def at(doc: Json, *keys: str) -> Json:
    """The object ``doc[k1][k2]…``."""
    for k in keys:
        doc = table(doc[k])
    return doc


def for_generators(spec: Json) -> Json:
    """``spec`` with operation ids, examples, servers, the title and the octet-stream
    alternative of the catalogue body (a new dict; ``spec`` is not changed)."""
    out = copy.deepcopy(spec)
    at(out, "info")["title"] = TITLE
    out["servers"] = SERVERS
    for path, item in at(out, "paths").items():
        for method, operation in table(item).items():
            op = table(operation)
            op["operationId"] = OPERATION_IDS[(method, path)]
            request, responses = EXAMPLES.get((method, path), (None, {}))
            body = op.get("requestBody")
            if body is not None and request is not None:
                for media in at(table(body), "content").values():
                    table(media)["example"] = request
            for status, example in responses.items():
                content = at(op, "responses", status).get("content", {})
                for media in table(content).values():
                    table(media)["example"] = example
    catalog = at(out, "paths", "/v1/campaigns/{campaign_id}/catalog", "put", "requestBody")
    at(catalog, "content")["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary",
                   "description": "the same NDJSON bytes, for clients that send a byte stream"},
        "example": CATALOG_NDJSON,
    }  # fmt: skip
    new = at(out, "paths", "/v1/campaigns", "post", "requestBody")
    at(new, "content")["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary",
                   "description": "the same TOML bytes, for clients that send a byte stream"},
    }  # fmt: skip
    return out
