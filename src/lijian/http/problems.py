"""RFC 9457 problem details (``application/problem+json``) and input-error mapping.

Every refusal the API gives is a ``Problem``: ``type`` (a URN built from the stable
``code``), ``title``, ``status``, ``code``, ``detail`` and ``errors`` (the offending
fields, each ``{"field", "message"}``). Handlers raise ``Problem``; the app renders it.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec

from lijian.core.errors import InvalidRequest, LijianError
from lijian.engine import error_status

PROBLEM_TYPE_PREFIX = "urn:lijian:problem:"
ERRORS_LISTED_MAX = 50  # a problem names at most this many fields


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = (errors or [])[:ERRORS_LISTED_MAX]
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
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
    errors: list[dict[str, Any]] = []
    if isinstance(exc, InvalidRequest):
        errors = [{"field": f, "message": exc.detail} for f in exc.fields]
    headers = {"Retry-After": "1"} if status == 503 else None
    return Problem(status, exc.code, exc.detail, errors, headers)


# msgspec says e.g. "Expected `int`, got `float` - at `$.items[0].unit_price_fen`" or
# "Object missing required field `person` - at `$.items[0]`".
_AT_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD_RE = re.compile(r"(?:missing required|contains unknown) field `(?P<name>[^`]*)`")


def field_path(message: str) -> str:
    """The offending field of a msgspec validation message, as ``items[0].unit_price_fen``."""
    m = _AT_RE.search(message)
    path = m.group("path") if m else ""
    f = _FIELD_RE.search(message)
    if f:
        path = f"{path}.{f.group('name')}"
    return path.lstrip(".") or "$"


def from_decode_error(exc: msgspec.DecodeError, what: str = "body") -> Problem:
    """400 for JSON that does not parse, 422 for JSON of the wrong shape (with the field)."""
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        field = field_path(message)
        clean = _AT_RE.sub("", message)
        return Problem(
            422, "invalid_request", f"{what}: {clean}", [{"field": field, "message": clean}]
        )
    return Problem(400, "malformed_json", f"{what} is not valid JSON: {message}")
