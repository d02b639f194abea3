"""Threshold, sold-out and restock events, from the ledger's figures after each batch.

- ``tranche.threshold``: today's open tranche's remaining (available) fell below
  ``pct`` % of what it released; once per tranche and threshold, and one matching
  ``resolved: true`` event when money comes back to ``pct`` % or more (a void, an expiry,
  a clawback to the same tranche). Nothing more for that pair afterwards.
- ``budget.threshold``: the same for the whole campaign, remaining = budget − granted −
  held over every tranche; once per campaign and threshold, and its resolution.
- ``tranche.sold_out`` when today's tranche sells out, ``tranche.restocked`` when money
  comes back to a sold-out tranche (each time it happens: each needs money to move);
  with it ``vouchers.sold_out`` for a campaign of claimed vouchers ([claims]).
- ``vouchers.threshold`` ([claims], ``[alerts] vouchers_left_pct``): today's whole
  vouchers left fell below ``pct`` % of the whole vouchers its tranche released; once
  per tranche and threshold, and its resolution, as ``tranche.threshold``.

"Below" is strict and integer: ``remaining_fen * 100 < pct * released_fen``. The state
is rebuilt at start from the events already stored (``restore``), so a restart never
announces a crossing twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum

from lijian.core.ledger import Ledger
from lijian.core.settings import Settings
from lijian.core.views import iso
from lijian.core.vouchers import whole_vouchers
from lijian.events.model import EventType, NewEvent, StoredEvent


class Crossing(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


class AlertWatch:
    def __init__(self, settings: Iterable[Settings]) -> None:
        settings = list(settings)
        self.tranche_pct = {s.campaign.id: s.alerts.tranche_remaining_pct for s in settings}
        self.budget_pct = {s.campaign.id: s.alerts.budget_remaining_pct for s in settings}
        self.vouchers_pct = {s.campaign.id: s.alerts.vouchers_left_pct for s in settings}
        # (campaign, day, pct) / (campaign, "", pct) → crossing; (campaign, day) → sold out
        self.tranche_state: dict[tuple[str, str, int], Crossing] = {}
        self.budget_state: dict[tuple[str, int], Crossing] = {}
        self.sold_out: dict[tuple[str, str], bool] = {}
        self.vouchers_state: dict[tuple[str, str, int], Crossing] = {}

    def restore(self, ev: StoredEvent) -> None:
        """Replay one stored event into the state (at start, in seq order)."""
        data = json.loads(ev.data_json)
        crossing = Crossing.RESOLVED if data.get("resolved") else Crossing.FIRED
        if ev.type == EventType.TRANCHE_THRESHOLD:
            self.tranche_state[(ev.campaign_id, data["date"], data["threshold_pct"])] = crossing
        elif ev.type == EventType.VOUCHERS_THRESHOLD:
            self.vouchers_state[(ev.campaign_id, data["date"], data["threshold_pct"])] = crossing
        elif ev.type == EventType.BUDGET_THRESHOLD:
            self.budget_state[(ev.campaign_id, data["threshold_pct"])] = crossing
        elif ev.type == EventType.TRANCHE_SOLD_OUT:
            self.sold_out[(ev.campaign_id, data["date"])] = True
        elif ev.type == EventType.TRANCHE_RESTOCKED:
            self.sold_out[(ev.campaign_id, data["date"])] = False

    def observe(self, ledger: Ledger, now_ms: int) -> list[NewEvent]:
        """Events for what the last batch changed (call after it was applied)."""
        out: list[NewEvent] = []
        for cid, b in ledger.books.items():
            t = b.open_tranche()
            if t is not None:
                self._tranche(out, cid, t.day, t.available_fen, t.released_fen, now_ms)
                if self.vouchers_pct.get(cid):
                    left, released = (
                        whole_vouchers(b, t.available_fen),
                        whole_vouchers(b, t.released_fen),
                    )
                    self._vouchers(out, cid, t.day, left, released, now_ms)
                key = (cid, t.day)
                sold = t.sold_out_at_ms is not None
                if sold != self.sold_out.get(key, False):
                    self.sold_out[key] = sold
                    tz = b.schedule.tz
                    if sold:
                        gone = {"date": t.day, "sold_out_at": iso(t.sold_out_at_ms, tz)}
                        out.append(NewEvent(cid, EventType.TRANCHE_SOLD_OUT, now_ms, gone))
                        if b.settings.claims.on:  # the day's last voucher was claimed
                            last = {**gone, "vouchers_claimed": t.vouchers_claimed}
                            out.append(NewEvent(cid, EventType.VOUCHERS_SOLD_OUT, now_ms, last))
                    else:
                        back = {"date": t.day, "remaining_fen": t.available_fen}
                        out.append(NewEvent(cid, EventType.TRANCHE_RESTOCKED, now_ms, back))
            pcts = self.budget_pct.get(cid, ())
            if pcts:
                budget = b.budget_fen
                used = sum(x.granted_fen + x.held_fen for x in b.tranches.values())
                self._budget(out, cid, budget - used, budget, pcts, now_ms)
        return out

    def _tranche(
        self, out: list[NewEvent], cid: str, day: str, remaining: int, released: int, now: int
    ) -> None:
        if released <= 0:
            return
        for pct in self.tranche_pct.get(cid, ()):
            key = (cid, day, pct)
            state = self.tranche_state.get(key)
            below = remaining * 100 < pct * released
            if (state is None and below) or (state is Crossing.FIRED and not below):
                self.tranche_state[key] = Crossing.FIRED if below else Crossing.RESOLVED
                data = {"date": day, "threshold_pct": pct, "remaining_fen": remaining,
                        "released_fen": released, "resolved": not below}  # fmt: skip
                out.append(NewEvent(cid, EventType.TRANCHE_THRESHOLD, now, data))

    def _vouchers(
        self, out: list[NewEvent], cid: str, day: str, left: int, released: int, now: int
    ) -> None:
        if released <= 0:
            return
        for pct in self.vouchers_pct.get(cid, ()):
            key = (cid, day, pct)
            state = self.vouchers_state.get(key)
            below = left * 100 < pct * released
            if (state is None and below) or (state is Crossing.FIRED and not below):
                self.vouchers_state[key] = Crossing.FIRED if below else Crossing.RESOLVED
                data = {"date": day, "threshold_pct": pct, "vouchers_left": left,
                        "vouchers_released": released, "resolved": not below}  # fmt: skip
                out.append(NewEvent(cid, EventType.VOUCHERS_THRESHOLD, now, data))

    def _budget(
        self, out: list[NewEvent], cid: str, remaining: int, budget: int,
        pcts: tuple[int, ...], now: int,
    ) -> None:  # fmt: skip
        for pct in pcts:
            key = (cid, pct)
            state = self.budget_state.get(key)
            below = remaining * 100 < pct * budget
            if (state is None and below) or (state is Crossing.FIRED and not below):
                self.budget_state[key] = Crossing.FIRED if below else Crossing.RESOLVED
                data = {"threshold_pct": pct, "remaining_fen": remaining, "budget_fen": budget,
                        "resolved": not below}  # fmt: skip
                out.append(NewEvent(cid, EventType.BUDGET_THRESHOLD, now, data))
