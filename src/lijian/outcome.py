"""What an engine command answers: an ``Outcome`` (HTTP status and body), and the
status each engine error maps to. Shared by the engine, the HTTP layer and the simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lijian.core import views
from lijian.core.errors import LijianError
from lijian.core.ledger import HoldOutcome, Ledger
from lijian.jsonish import Json


@dataclass(slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def shape_hold(led: Ledger, out: HoldOutcome) -> Outcome:
    """A hold outcome as the 201/200 a redemption answers (as ``_hold_command`` does)."""
    if out.redemption is None:
        return Outcome(200, views.declined_view(out.reasons))
    tz = led.books[out.redemption.campaign_id].schedule.tz
    return Outcome(201, views.created_view(out.redemption, tz), out.replayed)


def quote_body(
    eligible: bool, disc: int, payable: int, capped: bool, reasons: list[tuple[str, str]]
) -> Json:
    return {
        "eligible": eligible,
        "discount_fen": disc,
        "payable_fen": payable,
        "pay_fen": payable - disc,
        "capped": capped,
        "reasons": views.reasons_view(reasons),
    }


_ERROR_STATUS = {
    "invalid_request": 422,
    "idempotency_key_reused": 422,
    "refund_exceeds_order": 422,
    "redemption_not_found": 404,
    "campaign_not_found": 404,
    "not_found": 404,
    "amendment_not_found": 404,
    "block_not_found": 404,
    "voucher_not_found": 404,
    "flag_not_found": 404,
    "four_eyes_required": 403,
    "overloaded": 503,
    "engine_stopped": 503,
    "no_sync_standby": 503,  # lijian.store.pg_durability: --require-sync-standby
    "sequencer_unavailable": 503,  # lijian.cluster.gateway: no answer from the sequencer
}


def error_status(exc: LijianError) -> int:
    from lijian.core.errors import Conflict

    if isinstance(exc, Conflict):
        return 409
    return _ERROR_STATUS.get(exc.code, 400)


def as_outcome(x: object) -> Outcome:
    if isinstance(x, LijianError):
        return Outcome(error_status(x), {"code": x.code, "detail": x.detail})
    assert isinstance(x, Outcome)
    return x
