"""The bodies of running a live campaign's endpoints (``http/operations.py``), as strict
structs: what the handlers decode into and what the OpenAPI document describes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from lijian.core.steering import DELTA_MAX_FEN, ID_MAX_CHARS, REASON_MAX_CHARS

DAYS_LISTED_MAX = 1_000
# No control characters, not only blanks: the core checks the same (core/steering.py);
# said here too so that the OpenAPI document states it.
_CLEAN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
CLEAN_TEXT_PATTERN = _CLEAN  # (the reason of a new campaign is a query parameter)
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=REASON_MAX_CHARS, pattern=_CLEAN)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_CHARS, pattern=_CLEAN)]
Date = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Delta = Annotated[int, msgspec.Meta(ge=-DELTA_MAX_FEN, le=DELTA_MAX_FEN)]


class ReasonBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class AmendmentBody(msgspec.Struct, forbid_unknown_fields=True):
    """``budget``: ``delta_fen`` (≠ 0) and ``days``; ``end``: ``last_date``."""

    kind: Literal["budget", "end"]
    reason: Reason
    delta_fen: Delta | None = None
    days: (
        Literal["remaining"]
        | Annotated[list[Date], msgspec.Meta(max_length=DAYS_LISTED_MAX)]
        | None
    ) = None
    last_date: Date | None = None


class BlockBody(msgspec.Struct, forbid_unknown_fields=True):
    """``person``: ``person_id``; ``sku``: ``platform`` and ``sku``."""

    kind: Literal["person", "sku"]
    reason: Reason
    person_id: Ident | None = None
    platform: Ident | None = None
    sku: Ident | None = None


class ReviewBody(msgspec.Struct, forbid_unknown_fields=True):
    """A risk flag's review: ``block_person`` may name one of its persons (required when
    it names several), ``block_sku`` one SKU of its redemptions (likewise)."""

    action: Literal["dismiss", "block_person", "block_sku"]
    reason: Reason
    person_id: Ident | None = None
    sku: Ident | None = None
