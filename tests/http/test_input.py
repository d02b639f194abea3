"""Bad input is refused as problem+json with the offending field, and changes no state."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http.harness import Api, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")

PERSON = "p-bad-input"


@pytest.fixture
def unchanged(api: Api) -> Iterator[None]:
    """The campaign status and the test person's quota are the same after the test."""
    before = (api.status(), api.person(PERSON))
    yield
    assert (api.status(), api.person(PERSON)) == before


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert set(body) == {"type", "title", "status", "code", "detail", "errors"}
    assert body["status"] == status
    assert body["code"] == code
    return body


def with_(path: str, value: Any) -> dict[str, Any]:
    """The example order with one field (dotted path, list indices) replaced or removed."""
    body = copy.deepcopy(order(person=PERSON))
    *parents, last = path.split(".")
    node: Any = body
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return body


_DELETE = object()

INVALID = [
    ("campaign_id", _DELETE, "campaign_id"),
    ("person.id", _DELETE, "person.id"),
    ("items", [], "items"),
    ("items", _DELETE, "items"),
    ("surprise", 1, "surprise"),
    ("person.nickname", "x", "person.nickname"),
    ("items.0.unit_price_fen", 129.0, "items[0].unit_price_fen"),
    ("items.0.unit_price_fen", "12900", "items[0].unit_price_fen"),
    ("items.0.unit_price_fen", -1, "items[0].unit_price_fen"),
    ("items.0.platform_discount_fen", 10.5, "items[0].platform_discount_fen"),
    ("items.0.quantity", 0, "items[0].quantity"),
    ("items.0.quantity", -2, "items[0].quantity"),
    ("items.0.quantity", 1.5, "items[0].quantity"),
    ("person.real_name_verified", "yes", "person.real_name_verified"),
    ("device_location.crs", "utm", "device_location.crs"),
    ("device_location.lat", 91, "device_location.lat"),
    ("delivery_address.adcode", "51010", "delivery_address.adcode"),
    ("order_id", "", "order_id"),
    ("order_id", "x" * 129, "order_id"),
    ("other_government_subsidy", "no", "other_government_subsidy"),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID, ids=[x[0] for x in INVALID])
@pytest.mark.usefixtures("unchanged")
def test_an_invalid_order_is_422_with_the_field(
    api: Api, path: str, value: Any, field: str
) -> None:
    body = with_(path, value)
    for r in (api.redeem(body), api.post("/v1/quotes", body)):
        p = problem(r, 422, "invalid_request")
        assert p["errors"][0]["field"] == field, p


@pytest.mark.usefixtures("unchanged")
def test_a_platform_discount_above_the_line_is_422(api: Api) -> None:
    p = problem(api.redeem(with_("items.0.platform_discount_fen", 30_000)), 422, "invalid_request")
    assert p["errors"][0]["field"] == "items"


@pytest.mark.usefixtures("unchanged")
def test_a_repeated_sku_is_422(api: Api) -> None:
    body = order(person=PERSON)
    body["items"] = body["items"] * 2
    problem(api.redeem(body), 422, "invalid_request")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("text", [b"{", b"", b"not json", b'{"campaign_id": "x",}', b"\xff\xfe"])
def test_bad_json_is_400(api: Api, text: bytes) -> None:
    r = api.request(
        "POST",
        "/v1/redemptions",
        content=text,
        headers={"content-type": "application/json", "Idempotency-Key": "k-bad-json"},
    )
    problem(r, 400, "malformed_json")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_wrong_content_type_is_415(api: Api, ctype: str | None) -> None:
    body = json.dumps(order(person=PERSON)).encode()
    headers = {"Idempotency-Key": "k-415"}
    if ctype:
        headers["content-type"] = ctype
    for path in ("/v1/redemptions", "/v1/quotes"):
        problem(
            api.request("POST", path, content=body, headers=headers), 415, "unsupported_media_type"
        )


@pytest.mark.usefixtures("unchanged")
def test_json_with_a_charset_is_accepted(api: Api) -> None:
    body = json.dumps(order(person=PERSON)).encode()
    r = api.request(
        "POST",
        "/v1/quotes",
        content=body,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_body_is_413(api: Api) -> None:
    body = order(person=PERSON)
    body["items"][0]["sku"] = "x" * 100
    body["delivery_address"]["text"] = "y" * 500
    big = json.dumps(body).encode() + b" " * (65 * 1024)
    r = api.request(
        "POST",
        "/v1/redemptions",
        content=big,
        headers={"content-type": "application/json", "Idempotency-Key": "k-413"},
    )
    problem(r, 413, "payload_too_large")


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_chunked_body_is_413(api: Api) -> None:
    big = b"[" + b"0," * (40 * 1024) + b"0]"
    headers = api.signature_headers("POST", "/v1/quotes", big)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = api.http.post(
        "/v1/quotes", content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    problem(r, 413, "payload_too_large")


@pytest.mark.usefixtures("unchanged")
def test_a_missing_idempotency_key_is_400(api: Api) -> None:
    problem(api.post("/v1/redemptions", order(person=PERSON)), 400, "idempotency_key_required")
    r = api.post("/v1/redemptions/rd_a0000000001/refunds", {"refund_id": "x", "payable_fen": 1})
    problem(r, 400, "idempotency_key_required")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("key", ["", "k" * 256, "schlüssel"])
def test_a_malformed_idempotency_key_is_422(api: Api, key: str) -> None:
    body = json.dumps(order(person=PERSON)).encode()
    r = api.request(
        "POST",
        "/v1/redemptions",
        content=body,
        headers={
            "content-type": "application/json",
            "Idempotency-Key": key.encode(),
        },
    )
    p = problem(r, 422, "invalid_request")
    assert p["errors"][0]["field"] == "header:Idempotency-Key"


def test_a_255_char_idempotency_key_is_fine(api: Api) -> None:
    assert api.redeem(order(), key="k" * 255).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"refund_id": "x"},
        {"refund_id": "x", "payable_fen": 100, "items": [{"sku": "JD-1", "quantity": 1}]},
        {"refund_id": "x", "payable_fen": 100.0},
        {"refund_id": "x", "payable_fen": -5},
        {"refund_id": "x", "payable_fen": 0},
        {"refund_id": "x", "items": []},
        {"refund_id": "x", "items": [{"sku": "JD-404", "quantity": 1}]},
        {"refund_id": "x", "items": [{"sku": "JD-1", "quantity": -1}]},
        {"refund_id": "x", "payable_fen": 100, "reason": "broken"},
    ],
)
def test_an_invalid_refund_is_422_and_records_nothing(api: Api, body: dict[str, Any]) -> None:
    rid = api.granted(order())["id"]
    api.post(f"/v1/redemptions/{rid}/capture")
    before = api.get(f"/v1/redemptions/{rid}").json()
    r = api.post(f"/v1/redemptions/{rid}/refunds", body, headers={"Idempotency-Key": rid})
    problem(r, 422, r.json()["code"])
    assert r.json()["code"] in ("invalid_request", "refund_exceeds_order")
    assert api.get(f"/v1/redemptions/{rid}").json() == before
    # The key was not consumed by the refused request.
    ok = api.post(
        f"/v1/redemptions/{rid}/refunds",
        {"refund_id": "ok", "payable_fen": 100},
        headers={"Idempotency-Key": rid},
    )
    assert ok.status_code == 201


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"now": "2025-02-12T11:00:00+08:00", "advance_s": 5},
        {"now": "2025-02-12T11:00:00"},
        {"now": "yesterday"},
        {"advance_s": -1},
        {"advance_s": 1.5},
        {"advance_s": 10**12},
        {"tick": 1},
    ],
)
def test_an_invalid_clock_move_is_422(api: Api, body: dict[str, Any]) -> None:
    problem(api.post("/v1/admin/clock", body, as_="ops"), 422, "invalid_request")


@pytest.mark.usefixtures("unchanged")
def test_the_clock_does_not_move_backwards(api: Api) -> None:
    r = api.post("/v1/admin/clock", {"now": "2025-02-12T09:00:00+08:00"}, as_="ops")
    problem(r, 409, "clock_backwards")


@pytest.mark.parametrize("query", ["", "?date=2025-2-12", "?date=2025-02-30", "?date=tomorrow"])
def test_settlement_needs_a_valid_date(api: Api, query: str) -> None:
    p = problem(
        api.get(f"/v1/campaigns/{CID}/settlement{query}", as_="ops"), 422, "invalid_request"
    )
    assert p["errors"][0]["field"] == "date"


def test_an_overlong_path_id_is_422(api: Api) -> None:
    problem(api.get("/v1/redemptions/" + "r" * 129), 422, "invalid_request")


def test_unknown_paths_and_methods(api: Api) -> None:
    problem(api.get("/v1/nothing-here", signed=False), 404, "not_found")
    r = api.request("DELETE", "/v1/redemptions", signed=False)
    p = problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "POST"
    assert p["detail"]
