"""An engine's blocking face, for callers without an event loop: tests, benches and
scripts (the README's in-process example).

An :class:`~lijian.engine.Engine` built with ``background=True`` runs its own loop in a
thread; each method of :class:`Blocking` hands one awaited call to that loop through
``Engine.call`` and waits for its answer (at most ``engine.CALL_TIMEOUT_S``). It adds
nothing to what the engine decides, which is why it is a separate object holding the
engine rather than a second set of methods on it: the engine's own API is the async one
the HTTP layer and the sequencer await.
"""

from __future__ import annotations

from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.engine import Engine
from lijian.jsonish import Json
from lijian.outcome import Outcome, as_outcome


class Blocking:
    """``Blocking(engine).redeem(...)``: the engine's calls, each waited for."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def redeem(self, order: Order, client_id: str, key: str, fingerprint: str) -> Outcome:
        return self.redeem_many([(order, client_id, key, fingerprint)])[0]

    def redeem_many(self, requests: list[tuple[Order, str, str, str]]) -> list[Outcome]:
        out: list[Outcome] = self.engine.call(self.engine.redeem_many, requests)
        return out

    def capture(self, redemption_id: str) -> Outcome:
        return self.run_many([("capture", redemption_id)])[0]

    def void(self, redemption_id: str) -> Outcome:
        return self.run_many([("void", redemption_id)])[0]

    def run_many(self, calls: list[tuple[str, str]]) -> list[Outcome]:
        out: list[Outcome] = self.engine.call(self.engine.run_many, calls)
        return out

    def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        e = self.engine
        try:
            out: Outcome = e.call(e.refund, redemption_id, req, client_id, key, fp)
        except LijianError as exc:  # the refusal as the answer HTTP would give
            return as_outcome(exc)
        return out

    def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        return int(self.engine.call(self.engine.set_clock, target_ms, advance_ms))

    def catalog_upsert(self, rows: list[tuple[str, str, str]]) -> int:
        return int(self.engine.call(self.engine.catalog_upsert, rows))

    def status(self, campaign_id: str) -> Json:
        out: Json = self.engine.call(self.engine.status, campaign_id)
        return out

    def person(self, campaign_id: str, person_id: str) -> Json:
        out: Json = self.engine.call(self.engine.person, campaign_id, person_id)
        return out

    def check(self) -> list[str]:
        out: list[str] = self.engine.call(self.engine.check)
        return out
