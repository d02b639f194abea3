"""Identifiers and text are checked at the edge: a control character (U+0000-U+001F,
U+007F) or a lone surrogate escape in any string of the contract is refused with the
field named and changes nothing; a control character in a path id is a 404. A NUL used
to reach PostgreSQL (which cannot store it) and fail-stop the engine; see also
tests/postgres/test_pg_identifiers.py."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lijian.core.order import ID_LEN_MAX, Order, is_text
from lijian.http.ndjson import CatalogParser
from lijian.http.problems import from_decode_error
from tests.http.harness import Api, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")

PERSON = "p-bad-identifiers"
CONTROL = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f"]


@pytest.fixture
def still_grants(api: Api) -> Iterator[None]:
    """The server still grants an ordinary order afterwards (it did not fail-stop)."""
    yield
    assert api.granted(order())["status"] == "held"


@pytest.fixture
def unchanged(api: Api, still_grants: None) -> Iterator[None]:
    """Nothing moved (campaign status, the test person's quota)."""
    before = (api.status(), api.person(PERSON))
    yield
    assert (api.status(), api.person(PERSON)) == before


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


def with_(path: str, value: Any) -> dict[str, Any]:
    """The example order (of PERSON) with one field (dotted path, list indices) replaced."""
    body = copy.deepcopy(order(person=PERSON))
    *parents, last = path.split(".")
    node: Any = body
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[last] = value
    return body


# (dotted path in the order, value, field the problem names)
BAD = [
    ("order_id", "O-\x00x", "order_id"),
    ("order_id", "O-1\n", "order_id"),  # a trailing newline: `$` in a pattern would let it by
    ("person.id", "p\x00", "person.id"),
    ("person.id", "\x7f", "person.id"),
    ("person.device_id", "dev\x00", "person.device_id"),
    ("items.0.sku", "JD-1\x00", "items[0].sku"),
    ("platform", "jd\x00", "platform"),
    ("campaign_id", CID + "\x00", "campaign_id"),
    ("payment_channel", "unionpay\x1f", "payment_channel"),
    ("delivery_address.text", "四川省成都市\n锦江区", "delivery_address.text"),
    ("delivery_address.adcode", "510104\n", "delivery_address.adcode"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD, ids=[f"{x[0]}-{x[1]!r}" for x in BAD])
@pytest.mark.usefixtures("unchanged")
def test_a_control_character_in_an_order_is_422_naming_the_field(
    api: Api, path: str, value: str, field: str
) -> None:
    body = with_(path, value)
    for r in (api.redeem(body), api.post("/v1/quotes", body)):
        p = problem(r, 422, "invalid_request")
        assert p["errors"][0]["field"] == field, p


# Raw numbers where the channel must send a hash: refused before anything is stored.
RAW_NUMBERS = [
    ("person.phone_hash", "13812345678", "phone"),  # a mobile number
    ("person.phone_hash", "+8613812345678", "phone"),
    ("person.device_id", "8619912345678", "phone"),
    ("person.card_hash", "4222222222222", "bank card number"),  # 13 digits, Luhn-valid
    ("person.card_hash", "6222021234567890", "bank card number"),
    ("person.phone_hash", "11010519491231002X", "ID number"),  # a resident ID number
]


@pytest.mark.parametrize(("path", "value", "what"), RAW_NUMBERS, ids=[x[1] for x in RAW_NUMBERS])
@pytest.mark.usefixtures("unchanged")
def test_a_raw_phone_card_or_id_number_is_422_naming_the_field(
    api: Api, path: str, value: str, what: str
) -> None:
    body = with_(path, value)
    for r in (api.redeem(body), api.post("/v1/quotes", body)):
        p = problem(r, 422, "invalid_request")
        assert p["errors"][0]["field"] == path, p
        assert what in p["errors"][0]["message"], p


def test_numbers_that_are_not_raw_ones_are_accepted(api: Api) -> None:
    """Too short for a phone, not a mobile prefix, a failed Luhn check: opaque tokens."""
    for path, value in (
        ("person.phone_hash", "1381234567"),
        ("person.phone_hash", "12812345678"),
        ("person.card_hash", "4222222222223"),
    ):
        body = with_(path, value)
        body["person"]["id"] = f"p-{uuid.uuid4().hex[:12]}"
        assert api.granted(body)["status"] == "held"


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
@pytest.mark.usefixtures("unchanged")
def test_every_control_character_is_refused_in_an_id(api: Api, char: str) -> None:
    for path, field in (("order_id", "order_id"), ("person.id", "person.id")):
        p = problem(api.redeem(with_(path, f"x{char}y")), 422, "invalid_request")
        assert p["errors"][0]["field"] == field, p
        assert "control character" in p["errors"][0]["message"]


@pytest.mark.usefixtures("still_grants")
def test_a_refused_order_does_not_use_up_its_idempotency_key(api: Api) -> None:
    key = uuid.uuid4().hex
    problem(api.redeem(with_("order_id", "O-\x00"), key=key), 422, "invalid_request")
    good = order(person=f"p-{uuid.uuid4().hex[:12]}")
    r = api.redeem(good, key=key)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers


@pytest.mark.usefixtures("still_grants")
def test_a_control_character_in_a_refund_is_422_naming_the_field(api: Api) -> None:
    rid = api.granted(order())["id"]
    assert api.post(f"/v1/redemptions/{rid}/capture").status_code == 200
    url = f"/v1/redemptions/{rid}/refunds"
    for body, field in (
        ({"refund_id": "rf\x00", "payable_fen": 1_000}, "refund_id"),
        ({"refund_id": "rf-1", "items": [{"sku": "JD-1\x00", "quantity": 1}]}, "items[0].sku"),
    ):
        r = api.post(url, body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert problem(r, 422, "invalid_request")["errors"][0]["field"] == field
    r = api.post(url, {"refund_id": "rf\x00", "payable_fen": 1_000})
    problem(r, 400, "idempotency_key_required")
    r = api.post(
        url, {"refund_id": "rf-1", "payable_fen": 1_000}, headers={"Idempotency-Key": "k\tx"}
    )
    assert problem(r, 422, "invalid_request")["errors"][0]["field"] == "header:Idempotency-Key"
    assert api.get(f"/v1/redemptions/{rid}").json()["refunds"] == []
    r = api.post(
        url,
        {"refund_id": "rf-1", "payable_fen": 1_000},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


@pytest.mark.usefixtures("unchanged")
def test_a_control_character_in_the_idempotency_key_is_422(api: Api) -> None:
    p = problem(api.redeem(order(person=PERSON), key="k\tx"), 422, "invalid_request")
    assert p["errors"][0]["field"] == "header:Idempotency-Key"


@settings(max_examples=200, deadline=None)
@given(value=st.text(st.characters(codec="utf-8"), max_size=ID_LEN_MAX + 2))
def test_the_decoder_accepts_an_id_exactly_when_it_is_text(value: str) -> None:
    """The rule, as a property: 1-128 characters, none of U+0000-U+001F, U+007F."""
    rule = 1 <= len(value) <= ID_LEN_MAX and not any(c < " " or c == "\x7f" for c in value)
    assert is_text(value) == (rule or value == "")
    body = json.dumps({**order(), "order_id": value}, ensure_ascii=False).encode()
    try:
        decoded = msgspec.json.decode(body, type=Order)
    except msgspec.ValidationError as exc:
        assert not rule
        assert from_decode_error(exc).errors[0]["field"] == "order_id"
    else:
        assert rule and decoded.order_id == value


# ------------------------------------------------------------------- lone surrogates
def raw_order(order_id_json: str) -> bytes:
    """The example order's JSON with ``order_id`` spelt exactly as given (escapes kept)."""
    text = json.dumps(order(n="PLACEHOLDER", person=PERSON), ensure_ascii=False)
    return text.replace('"PLACEHOLDER"', order_id_json).encode()


@pytest.mark.parametrize("escape", [r'"O-\ud800"', r'"O-\udc00x"', r'"\ud800\ud800"'])
@pytest.mark.usefixtures("unchanged")
def test_a_lone_surrogate_escape_is_refused(api: Api, escape: str) -> None:
    """msgspec refuses it while parsing; nothing is stored either way."""
    body = raw_order(escape)
    for path in ("/v1/redemptions", "/v1/quotes"):
        headers = {"content-type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        r = api.request("POST", path, content=body, headers=headers)
        assert r.status_code in (400, 422), r.text
        assert r.json()["code"] in ("malformed_json", "invalid_request")


@pytest.mark.usefixtures("unchanged")
def test_a_lone_surrogate_escape_is_422_naming_the_field(api: Api) -> None:
    r = api.request(
        "POST",
        "/v1/redemptions",
        content=raw_order(r'"O-\ud800"'),
        headers={"content-type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert problem(r, 422, "invalid_request")["errors"][0]["field"] == "order_id"


@pytest.mark.parametrize(
    ("escape", "field"),
    [(r'"O-\ud800"', "order_id"), (r'"\udfff"', "order_id"), (r'"\ud800\u0041"', "order_id")],
)
def test_the_decode_error_of_a_lone_surrogate_maps_to_422_with_the_field(
    escape: str, field: str
) -> None:
    body = raw_order(escape)
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(body, type=Order)
    p = from_decode_error(info.value, body=body)
    assert (p.status, p.code, p.errors[0]["field"]) == (422, "invalid_request", field)
    nested = json.loads(body)
    nested["order_id"] = "O-1"
    text = json.dumps(nested).replace('"sku": "JD-1"', r'"sku": "JD-\ud800"')
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(text.encode(), type=Order)
    p = from_decode_error(info.value, body=text.encode())
    assert (p.status, p.errors[0]["field"]) == (422, "items[0].sku")
    # Without the body, or for JSON that is broken anyway: still malformed JSON.
    assert from_decode_error(info.value).status == 400
    broken = b'{"order_id": "\\ud800'
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(broken)
    assert from_decode_error(info.value, body=broken).status == 400


# ------------------------------------------------------------------------ catalogue
def catalog_line(sku: str, category: str = "fresh_food", platform: str = "jd") -> str:
    return json.dumps({"sku": sku, "category": category, "platform": platform})


def eligible(api: Api, sku: str) -> bool:
    return bool(api.post("/v1/quotes", order(sku=sku)).json()["eligible"])


@pytest.mark.usefixtures("unchanged")
def test_a_control_character_or_lone_surrogate_in_a_catalogue_line_is_422(api: Api) -> None:
    good = f"JD-{uuid.uuid4().hex[:8]}"
    bad = [
        (catalog_line("JD-\x00"), "sku"),
        (catalog_line("JD-x\n"), "sku"),
        (catalog_line("JD-x", category="fresh\x00food"), "category"),
        (catalog_line("JD-x", platform="jd\x00"), "platform"),
        (catalog_line("JD-x", platform="jd\x7f"), "platform"),
        (catalog_line("JD-PLACEHOLDER").replace("PLACEHOLDER", r"\ud800"), "sku"),
        (catalog_line("JD-x", category="PLACEHOLDER").replace("PLACEHOLDER", r"\udc00"),
         "category"),
    ]  # fmt: skip
    for text, field in bad:
        body = (catalog_line(good) + "\n" + text + "\n").encode()
        r = api.put_catalog(body)
        p = problem(r, 422, "invalid_request")
        assert p["errors"][0]["field"] == field, (text, p)
        assert p["errors"][0]["line"] == 2
    assert not eligible(api, good)  # the whole upload was refused


def test_the_catalogue_parser_refuses_them_whatever_the_chunking() -> None:
    lines = [catalog_line(f"JD-{i}") for i in range(50)]
    lines[37] = catalog_line("JD-\x00")
    data = ("\n".join(lines) + "\n").encode()
    for size in (1, 7, 64, len(data)):
        parser = CatalogParser()
        for i in range(0, len(data), size):
            parser.feed(data[i : i + size])
        parser.close()
        assert parser.error is not None
        assert (parser.error.line, parser.error.field, parser.error.malformed) == (38, "sku", False)
        assert parser.rows == []


# ---------------------------------------------------------------------------- paths
@pytest.mark.parametrize("esc", ["%00", "%01", "%0A", "%1F", "%7F"])
@pytest.mark.usefixtures("unchanged")
def test_a_control_character_in_a_path_id_is_404(api: Api, esc: str) -> None:
    unknown = problem(api.get("/v1/redemptions/rd_unknown"), 404, "redemption_not_found")
    r = api.get(f"/v1/redemptions/rd{esc}x")
    assert problem(r, 404, unknown["code"])["errors"] == []
    for action in ("capture", "void"):
        problem(api.post(f"/v1/redemptions/rd{esc}x/{action}"), 404, "redemption_not_found")
    r = api.post(
        f"/v1/redemptions/rd{esc}x/refunds",
        {"refund_id": "rf-1", "payable_fen": 1},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    problem(r, 404, "redemption_not_found")
    for path in (f"/v1/campaigns/{CID}{esc}/status", f"/v1/campaigns/{CID}{esc}"):
        problem(api.get(path, as_="ops"), 404, "campaign_not_found")
    problem(api.get(f"/public/campaigns/{CID}{esc}", signed=False), 404, "campaign_not_found")
    problem(api.get(f"/v1/campaigns/{CID}/persons/p{esc}x"), 404, "not_found")


def test_the_exact_redemption_problem_for_a_nul_in_the_path(api: Api) -> None:
    p = problem(api.get("/v1/redemptions/rd%00x"), 404, "redemption_not_found")
    assert p["detail"] == "unknown redemption 'rd\\x00x'"


# ------------------------------------------------------------ unicode that is fine
UNICODE_IDS = ["订单-😀", "O\u00a0x", "O\u0085x", "O-\u2028", "\ufeffO", " O "]


@pytest.mark.parametrize("oid", UNICODE_IDS, ids=[ascii(x) for x in UNICODE_IDS])
def test_unicode_ids_are_granted_and_read_back_unchanged(api: Api, oid: str) -> None:
    pid = f"人-{uuid.uuid4().hex[:6]}-{oid}"
    body = order(n=f"{oid}-{uuid.uuid4().hex[:6]}", person=pid)
    body["person"]["device_id"] = oid
    created = api.granted(body)
    assert (created["order_id"], created["person_id"]) == (body["order_id"], pid)
    got = api.get(f"/v1/redemptions/{created['id']}").json()
    assert (got["order_id"], got["person_id"]) == (body["order_id"], pid)
    person = api.person(quote(pid, safe=""))
    assert person["person_id"] == pid
    assert person["redemptions_count"] == 1
