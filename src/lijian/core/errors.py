"""Typed errors raised by the core. A raised error always means: nothing changed."""

from __future__ import annotations


class LijianError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "lijian_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(LijianError):
    """The call itself is malformed (negative quantity, unknown crs, …): HTTP 422."""

    code = "invalid_request"

    def __init__(self, detail: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.fields = fields


class CatalogFull(InvalidRequest):
    """A catalogue upload would take the catalogue past its limit of distinct categories."""

    def __init__(self, category: str, line: int, categories_max: int) -> None:
        self.message = f"the catalogue holds at most {categories_max} distinct categories"
        super().__init__(f"line {line}: {self.message}; nothing was stored", ("category",))
        self.category = category
        self.line = line


class SettingsInvalid(InvalidRequest):
    """A campaign settings file with problems: every one, as (field, why), in the words
    of ``lijian campaign check``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        n = len(problems)
        super().__init__(f"the campaign settings have {n} problem(s); nothing was proposed",
                         tuple(f for f, _ in problems))  # fmt: skip
        self.problems = problems


class NotFound(LijianError):
    code = "not_found"


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"


class VoucherNotFound(NotFound):
    code = "voucher_not_found"


class Conflict(LijianError):
    """A state conflict: HTTP 409. ``code`` is one of the contract's stable slugs."""

    code = "conflict"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class IdempotencyKeyReused(LijianError):
    """Same client and Idempotency-Key with a different request: HTTP 422."""

    code = "idempotency_key_reused"


class RefundExceedsOrder(LijianError):
    code = "refund_exceeds_order"


class EngineOverloaded(LijianError):
    """The bounded command queue is full: shed load instead of queueing without limit."""

    code = "overloaded"


class EngineStopped(LijianError):
    code = "engine_stopped"


class NoSyncStandby(LijianError):
    """``--require-sync-standby`` and no synchronous standby is attached to the
    PostgreSQL primary: nothing is acknowledged that a failover could lose (503)."""

    code = "no_sync_standby"
    retry_after_s = 1


class Forbidden(LijianError):
    """The caller may not do this (HTTP 403): e.g. approving its own amendment."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class AmendmentNotFound(NotFound):
    code = "amendment_not_found"


class BlockNotFound(NotFound):
    code = "block_not_found"


class FlagNotFound(NotFound):
    code = "flag_not_found"
