"""The engine's blocking face, for callers without an event loop: the CLI's offline
commands, the simulator, tests and benches.

An :class:`~lijian.engine.Engine` built with ``background=True`` runs its own loop in a
thread; each ``*_sync`` method here hands one awaited call to that loop through
``Engine.call`` and waits for its answer (at most ``CALL_TIMEOUT_S``). They add nothing
to what the async methods decide, which is why they live apart from the engine: the
engine's own API is the async one the HTTP layer and the sequencer await.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.outcome import Outcome, as_outcome


class _Loop(Protocol):
    """What the blocking calls need of the engine they are mixed into."""

    def call(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    async def redeem_many(self, requests: list[tuple[Order, str, str, str]]) -> list[Outcome]: ...

    async def run_many(self, calls: list[tuple[str, str]]) -> list[Outcome]: ...

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome: ...

    async def set_clock(
        self, target_ms: int | None = None, advance_ms: int | None = None
    ) -> int: ...

    async def catalog_upsert(
        self, rows: list[tuple[str, str, str]], categories: dict[str, int] | None = None
    ) -> int: ...

    def status(self, campaign_id: str) -> dict[str, Any]: ...

    def person(self, campaign_id: str, person_id: str) -> dict[str, Any]: ...

    def check(self) -> list[str]: ...


class BlockingCalls:
    """``*_sync`` twins of the engine's async methods (mixed into ``Engine``)."""

    def redeem_sync(
        self: _Loop, order: Order, client_id: str, key: str, fingerprint: str
    ) -> Outcome:
        out: list[Outcome] = self.call(self.redeem_many, [(order, client_id, key, fingerprint)])
        return out[0]

    def redeem_many_sync(self: _Loop, requests: list[tuple[Order, str, str, str]]) -> list[Outcome]:
        out: list[Outcome] = self.call(self.redeem_many, requests)
        return out

    def capture_sync(self: _Loop, redemption_id: str) -> Outcome:
        out: list[Outcome] = self.call(self.run_many, [("capture", redemption_id)])
        return out[0]

    def void_sync(self: _Loop, redemption_id: str) -> Outcome:
        out: list[Outcome] = self.call(self.run_many, [("void", redemption_id)])
        return out[0]

    def run_many_sync(self: _Loop, calls: list[tuple[str, str]]) -> list[Outcome]:
        out: list[Outcome] = self.call(self.run_many, calls)
        return out

    def refund_sync(
        self: _Loop, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        try:
            out: Outcome = self.call(self.refund, redemption_id, req, client_id, key, fp)
        except LijianError as exc:
            return as_outcome(exc)
        return out

    def set_clock_sync(
        self: _Loop, target_ms: int | None = None, advance_ms: int | None = None
    ) -> int:
        return int(self.call(self.set_clock, target_ms, advance_ms))

    def catalog_upsert_sync(self: _Loop, rows: list[tuple[str, str, str]]) -> int:
        return int(self.call(self.catalog_upsert, rows))

    def status_sync(self: _Loop, campaign_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call(self.status, campaign_id)
        return out

    def person_sync(self: _Loop, campaign_id: str, person_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call(self.person, campaign_id, person_id)
        return out

    def check_sync(self: _Loop) -> list[str]:
        out: list[str] = self.call(self.check)
        return out
