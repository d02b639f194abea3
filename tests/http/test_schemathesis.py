"""Fuzz the server from its own /openapi.json with schemathesis: no 5xx, and every answer
matches the document (status code, content type, body schema).

Each operation gets up to ``EXAMPLES_PER_OPERATION`` generated requests (valid and
invalid: schemathesis' positive and negative modes), each signed as an operator over the
exact bytes that go on the wire. The server is its own (the fuzzer moves the manual
clock and writes the catalogue); the test checks they total at least 1,000.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from lijian.http.auth import sign
from lijian.http.openapi import build_spec
from tests.http.harness import CLIENTS, Server
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-fuzz")

EXAMPLES_PER_OPERATION = 75
REQUESTS_MIN = 1_000
SENT: list[int] = []  # status codes of every fuzzed request


def _fuzzable_spec() -> dict[str, Any]:
    """The document without the application/octet-stream alternatives (there for code
    generators) of the catalogue and of a new campaign's file: they carry the same NDJSON
    and TOML as their own media types, which JSON Schema cannot say of a byte string, so
    the fuzzer would send random bytes there."""
    spec = build_spec()
    spec["paths"]["/v1/campaigns/{campaign_id}/catalog"]["put"]["requestBody"]["content"].pop(
        "application/octet-stream"
    )
    spec["paths"]["/v1/campaigns"]["post"]["requestBody"]["content"].pop("application/octet-stream")
    return spec


schema = schemathesis.openapi.from_dict(_fuzzable_spec())


def _integral(value: Any) -> Any:
    """2216.0 is an integer to JSON Schema, but this API refuses a decimal point where it
    expects an integer (floats for money are refused by design): spell such values as
    JSON integers, which is what the contract's clients send."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


@schemathesis.serializer("application/json")
def _json(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return json.dumps(_integral(value)).encode()


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    rows = value if isinstance(value, list) else [value]
    return "".join(json.dumps(_integral(r)) + "\n" for r in rows).encode()


@schemathesis.serializer("application/toml")
def _toml(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """A new campaign's settings file: the document says a string (the file's text)."""
    text = value if isinstance(value, str) else json.dumps(_integral(value))
    return text.encode("utf-8", "surrogatepass")


class Signed(requests.auth.AuthBase):
    """Sign the prepared request: what requests will send is exactly what is signed."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self.secret = str(CLIENTS[key_id]["secret"]).encode()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        ts, nonce = str(int(time.time())), uuid.uuid4().hex
        assert r.method is not None
        r.headers["X-Lijian-Key"] = self.key_id
        r.headers["X-Lijian-Timestamp"] = ts
        r.headers["X-Lijian-Nonce"] = nonce
        r.headers["X-Lijian-Signature"] = sign(
            self.secret, r.method, r.path_url, ts, nonce, bytes(body)
        )
        return r


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp("http-fuzz")), topology=topology)
    try:
        yield s
    finally:
        s.close()


@schema.auth()
class SignAsOperator:
    """Registered as the schema's auth, so schemathesis knows requests are authenticated
    (it then also probes each operation unsigned and expects 401). A negative case whose
    headers are broken on purpose (e.g. a required signature header dropped) is sent
    unsigned, as the fuzzer intends, and must be refused."""

    signer = Signed("ops")  # the operator may call everything

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> Signed:
        return self.signer

    def set(self, case: schemathesis.Case, data: Signed, ctx: schemathesis.AuthContext) -> None:
        if case.meta is None or not case.meta.is_negative_at(ParameterLocation.HEADER):
            case._auth = data


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


OPERATIONS = sorted((op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations())


def test_the_api_matches_its_openapi_document(
    fuzz_server: Server, session: requests.Session
) -> None:
    """One test over every operation, so the 1,000-request total is counted in one process
    (pytest-xdist may spread separate tests over workers)."""
    failures: dict[str, BaseException] = {}
    for path, method in OPERATIONS:
        try:
            fuzz_operation(path, method, fuzz_server.url, session)
        except Exception as exc:  # report every failing operation, not only the first
            failures[f"{method} {path}"] = exc
    counts = sorted(collections.Counter(SENT).items())
    print(f"\n{len(SENT)} fuzzed requests, by status {counts}")
    assert not failures, "\n\n".join(f"{op}: {exc}" for op, exc in failures.items())
    assert len(SENT) >= REQUESTS_MIN, f"only {len(SENT)} fuzzed requests: {counts}"


def fuzz_operation(path: str, method: str, base_url: str, session: requests.Session) -> None:
    # Explicit strategies rather than ``schema.parametrize()``, which under pytest-xdist
    # ran only the first operation (schemathesis 4.32).
    op = schema[path][method]
    strategies = [
        op.as_strategy(GenerationMode.POSITIVE, auth_storage=schema.auth),
        op.as_strategy(GenerationMode.NEGATIVE, auth_storage=schema.auth),
    ]
    if "{campaign_id}" in path:  # also reach past the 404 of a random campaign id
        strategies.append(
            op.as_strategy(
                GenerationMode.POSITIVE,
                auth_storage=schema.auth,
                path_parameters={"campaign_id": CID},
            )
        )
    cases = st.one_of(strategies)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=cases)
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session)
        SENT.append(response.status_code)
        assert response.status_code < 500, response.text
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if case.meta is not None and case.meta.generation.mode.is_positive:
            assert response.status_code in POSITIVE_OK or is_semantic_refusal(response), (
                response.status_code,
                response.text,
            )

    fuzz()


# Schema-valid requests may still be refused for rules JSON Schema cannot state (API.md,
# "Validation beyond the schema"); each such refusal names the field it is about.
POSITIVE_OK = {200, 201, 401, 403, 404, 409, 429}
SEMANTIC_FIELDS = {
    "items",  # platform discount above a line, a repeated SKU, a refunded SKU not ordered
    "now",  # a time this server cannot represent, or a manual clock cannot show
    "advance_s",  # a move past the last time a manual clock shows (2099-12-31)
    "platform",  # a catalogue line for a platform outside the campaign
    "category",  # a catalogue past its 255 distinct categories
    # a 13-15 digit number with a valid Luhn check digit (a raw card number)
    "person.device_id",
    "person.card_hash",
    "person.phone_hash",
    # Running a live campaign: the fields an amendment or block kind needs, a zero
    # delta_fen, days outside the campaign, closed, unsorted or repeated.
    "delta_fen",
    "days",
    "last_date",
    "person_id",
    "sku",
    # GET /v1/admin/events: the schema's cursor is either deployment's (one ledger's
    # evt_<seq>, a sharded gateway's evt_<node><seq>…); each refuses the other's.
    "after",
}


def is_semantic_refusal(response: requests.Response | Any) -> bool:
    if response.status_code != 422:
        return False
    body = response.json()
    if body["code"] in ("refund_exceeds_order", "idempotency_key_reused"):
        # (a generated key the fuzzer already sent with another body, e.g. a hold's key
        # on a refund: the contract's 422, whatever the schema says of the request)
        return True
    fields = {e["field"] for e in body["errors"]}
    if body["code"] == "invalid_request" and (
        fields == {"body"} or body["detail"].startswith("the campaign settings have")
    ):
        return True  # a new campaign's file (a string to the schema) that is not a campaign
    return body["code"] == "invalid_request" and bool(fields) and fields <= SEMANTIC_FIELDS
