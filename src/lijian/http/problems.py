"""RFC 9457 problem details (``application/problem+json``) and input-error mapping.

Every refusal the API gives is a ``Problem``: ``type`` (a URN built from the stable
``code``), ``title``, ``status``, ``code``, ``detail`` and ``errors`` (the offending
fields, each ``{"field", "message"}``). Handlers raise ``Problem``; the app renders it.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import NotRequired, TypedDict

import msgspec

from lijian.core.errors import CatalogFull, InvalidRequest, LijianError, SettingsInvalid
from lijian.core.order import IDENTIFIER_PATTERN, TEXT_PATTERN
from lijian.http.types import PROBLEM_JSON, Reply
from lijian.jsonish import Json
from lijian.outcome import error_status

PROBLEM_TYPE_PREFIX = "urn:lijian:problem:"
ERRORS_LISTED_MAX = 50  # a problem names at most this many fields


class FieldError(TypedDict):
    """One offending field of a problem (``line``: a catalogue upload's row)."""

    field: str
    message: str
    line: NotRequired[int]


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = (errors or [])[:ERRORS_LISTED_MAX]
        self.headers = headers or {}

    def body(self) -> Json:
        return {
            "type": PROBLEM_TYPE_PREFIX + self.code,
            "title": _title(self.status),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            "errors": self.errors,
        }


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def from_engine_error(exc: LijianError) -> Problem:
    """Map an engine error (raised before any state changed) to its problem."""
    status = error_status(exc)
    errors: list[FieldError] = []
    if isinstance(exc, CatalogFull):
        errors = [{"field": "category", "message": exc.message, "line": exc.line}]
    elif isinstance(exc, SettingsInvalid):
        errors = [{"field": f, "message": m} for f, m in exc.problems]
    elif isinstance(exc, InvalidRequest):
        errors = [{"field": f, "message": exc.detail} for f in exc.fields]
    # An admission window that is full says when it ends (lijian.release.WindowFull).
    retry_s = getattr(exc, "retry_after_s", 1)
    headers = {"Retry-After": str(retry_s)} if status == 503 else None
    return Problem(status, exc.code, exc.detail, errors, headers)


_encode = msgspec.json.Encoder().encode


def problem_reply(p: Problem) -> Reply:
    headers = [(k.lower().encode(), v.encode()) for k, v in p.headers.items()] or None
    return Reply(p.status, _encode(p.body()), PROBLEM_JSON, headers)


def too_large(limit_bytes: int) -> Problem:
    return Problem(413, "payload_too_large", f"request body larger than {limit_bytes} bytes")


# msgspec says e.g. "Expected `int`, got `float` - at `$.items[0].unit_price_fen`" or
# "Object missing required field `person` - at `$.items[0]`".
_AT_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD_RE = re.compile(
    r"(?:missing required|contains unknown|raw number in) field `(?P<name>[^`]*)`"
)


def field_path(message: str) -> str:
    """The offending field of a msgspec validation message, as ``items[0].unit_price_fen``."""
    m = _AT_RE.search(message)
    path = m.group("path") if m else ""
    f = _FIELD_RE.search(message)
    if f:
        path = f"{path}.{f.group('name')}"
    return path.lstrip(".") or "$"


def from_decode_error(
    exc: msgspec.DecodeError, what: str = "body", body: bytes | None = None
) -> Problem:
    """400 for JSON that does not parse, 422 for JSON of the wrong shape (with the field).

    Give ``body`` to have a lone surrogate escape answered as the 422 it is (see
    ``lone_surrogate_field``) rather than as malformed JSON."""
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        field = field_path(message)
        clean = plain_message(_AT_RE.sub("", message))
        return Problem(
            422, "invalid_request", f"{what}: {clean}", [{"field": field, "message": clean}]
        )
    where = lone_surrogate_field(body) if body is not None else None
    if where is not None:
        return Problem(
            422,
            "invalid_request",
            f"{what}: {where}: {LONE_SURROGATE}",
            [{"field": where, "message": LONE_SURROGATE}],
        )
    return Problem(400, "malformed_json", f"{what} is not valid JSON: {message}")


_TEXT_RULE = f"matching regex {TEXT_PATTERN!r}"
TEXT_RULE_PLAIN = "without control characters (U+0000-U+001F, U+007F)"
LONE_SURROGATE = "a lone UTF-16 surrogate escape is not a Unicode character"
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


_IDENTIFIER_RULE = f"matching regex {IDENTIFIER_PATTERN!r}"
IDENTIFIER_RULE_PLAIN = (
    "that is not a raw phone number, raw ID number or bank card number (send the channel's "
    "hash), " + TEXT_RULE_PLAIN
)


def plain_message(message: str) -> str:
    """A msgspec message with the contract's text patterns said in words."""
    return message.replace(_IDENTIFIER_RULE, IDENTIFIER_RULE_PLAIN).replace(
        _TEXT_RULE, TEXT_RULE_PLAIN
    )


def lone_surrogate_field(raw: bytes) -> str | None:
    """The field (``person.id``) of the first string or key in ``raw`` holding a lone
    surrogate escape such as ``"\\ud800"``, or None.

    The JSON grammar allows such an escape but it names no Unicode character, so msgspec
    refuses it while parsing, as if the JSON were malformed: the value is what is wrong.
    Only on that error path: ``raw`` is parsed again by ``json``, which keeps surrogates.
    """
    if b"\\u" not in raw:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # malformed anyway (or not UTF-8)
        return None
    found = _surrogate_path(doc, "")
    return None if found is None else found.lstrip(".") or "$"


def _surrogate_path(doc: object, path: str) -> str | None:
    if isinstance(doc, str):
        return path if _SURROGATE_RE.search(doc) else None
    if isinstance(doc, dict):
        for k, v in doc.items():
            if _SURROGATE_RE.search(k):  # the key itself: say it with the escape
                return f"{path}.{k.encode('utf-8', 'backslashreplace').decode()}"
            found = _surrogate_path(v, f"{path}.{k}")
            if found is not None:
                return found
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found = _surrogate_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None
