"""What the HTTP modules pass each other: a request as a handler sees it, its reply, a
route, the ASGI callables, and the small request bodies the contract decodes.

This module imports nothing else of ``lijian.http``, so that the pipeline (``app.py``),
the endpoints (``api.py``), the docs and extensions (``extras.py``) and the OpenAPI
document (``openapi.py``) can all use these types without importing each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from lijian.port import EnginePort

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_BODY_MAX_BYTES = 64 * 1024  # an order of 500 items fits in ~60 KiB
ADVANCE_S_MAX = 366 * 86_400  # the clock moves at most a year per call
JSON = b"application/json"
PROBLEM_JSON = b"application/problem+json"

_encode = msgspec.json.Encoder().encode
_sha256 = hashlib.sha256


class ClientGone(Exception):
    """The client disconnected before its request body arrived: answer nobody."""


class Caller(Protocol):
    """The client that signed a request (``lijian.http.clients.Client``), as read here."""

    @property
    def key_id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def platform(self) -> str | None: ...


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] | None = None


def json_reply(status: int, obj: object, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, _encode(obj), JSON, headers)


@dataclass(slots=True)
class Call:
    """One request as a handler sees it (headers keyed by lower-case bytes)."""

    method: str
    path: str  # percent-decoded, for routing
    path_qs: str  # exactly as sent, with "?query" if any: what the client signed
    query: bytes
    headers: dict[bytes, bytes]
    params: dict[str, str]
    rid: bytes  # the request id, as it goes into the X-Request-Id header
    # What the handler calls: the app's engine, or for a signed request the one its
    # ticket rides with (lijian.port.AdmissionPort.carrier).
    engine: EnginePort
    body: bytes = b""
    body_hex: str = ""
    client: Caller | None = None
    parsed: Any = None  # what a streaming reader produced (the catalogue's rows)
    # f"{method}\n{path_qs}\n".encode(): the start of both the signed string and the
    # fingerprint, made once per signed request.
    signed_prefix: bytes = b""

    @property
    def request_id(self) -> str:
        return self.rid.decode("ascii")

    def header(self, name: bytes) -> str | None:
        v = self.headers.get(name)
        return None if v is None else v.decode("latin-1")

    def fingerprint(self) -> str:
        """What makes two requests "the same" for Idempotency-Key: method, path, body."""
        prefix = self.signed_prefix or f"{self.method}\n{self.path_qs}\n".encode()
        return _sha256(prefix + self.body_hex.encode()).hexdigest()


Handler = Callable[[Call], Awaitable[Reply]]
# A streaming body reader: consumes the body, returns (what the handler gets, hex sha256).
Reader = Callable[[Call, Receive], Awaitable[tuple[object, str]]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # "/v1/redemptions/{redemption_id}/capture"
    handler: Handler
    roles: frozenset[str] | None  # None: an unsigned operations endpoint
    reader: Reader | None = None  # None: buffer the body up to body_max_bytes
    body_max_bytes: int = JSON_BODY_MAX_BYTES
    name: str = field(default="", compare=False)  # metrics label, e.g. "POST /v1/quotes"


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    """Capture and void take no fields: an empty body or ``{}``."""


class ClockRequest(msgspec.Struct, forbid_unknown_fields=True):
    now: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    advance_s: Annotated[int, msgspec.Meta(ge=0, le=ADVANCE_S_MAX)] | None = None
