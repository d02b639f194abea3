"""Run a rehearsal script's operator actions inside a simulation, and count their effect.

Each step of the script (:mod:`lijian.sim.script`) is one call of ``Engine.operate``, the
path the HTTP API and the dashboard take: the one writer decides it in arrival order and
commits a ledger entry, so a rehearsal's ledger holds its pauses, amendments and blocks
like a live one and ``lijian audit`` replays them. Nothing here decides what a change
does to money: a refused step (a cut below what is granted, an approval by the proposer's
own key) is recorded with the engine's answer, and the run goes on.

The driver calls :meth:`Rehearsal.run_due` at a tick before that tick's arrivals are
submitted, so a pause at 10:05:00 declines every arrival from 10:05:00 on, and
:meth:`Rehearsal.observe` after them: it counts, from the engine's answers, what
happened to the arrivals inside each pause and to each blocked person or SKU.
"""

from __future__ import annotations

import collections
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lijian.core.changes import free_fen
from lijian.core.errors import LijianError
from lijian.core.views import iso
from lijian.operations import operations_view
from lijian.outcome import Outcome, error_status
from lijian.sim.script import BlockTarget, Script, Step, StepOp

if TYPE_CHECKING:
    from lijian.core.book import Book
    from lijian.core.order import Order
    from lijian.engine import Engine
    from lijian.sim.results import DaySummary, Summary


@dataclass(slots=True)
class Window:
    """What the arrivals met while a pause or a block was in force (engine answers)."""

    name: str  # the step that started it
    kind: str  # "pause", "person" or "sku"
    subject: str  # "" for a pause, the person id or "platform/sku"
    from_ms: int
    to_ms: int | None = None  # None: in force until the end of the run
    arrivals: int = 0
    grants: int = 0
    declines: int = 0
    declines_by_reason: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class StepRecord:
    step: Step
    status: int  # the engine's answer, as HTTP would send it (0: not sent)
    body: dict[str, Any]
    subject: str = ""  # who or what a rule chose
    before: dict[str, Any] | None = None  # tranche figures around an approval
    after: dict[str, Any] | None = None


class Rehearsal:
    """One script run against one engine; lives on the engine's loop like the driver."""

    def __init__(self, engine: Engine, campaign_id: str, script: Script, kinds: dict[str, str]):
        self.engine = engine
        self.cid = campaign_id
        self.script = script
        self.kinds = kinds  # person id → kind (resident, outsider, spoofer)
        self.pending = collections.deque(script.steps)
        self.records: list[StepRecord] = []
        self.answers: dict[str, dict[str, Any]] = {}  # step name → its 2xx answer
        self.windows: list[Window] = []
        self.pause: Window | None = None
        self.persons: dict[str, Window] = {}  # active person blocks, by person id
        self.skus: dict[tuple[str, str], Window] = {}  # active SKU blocks
        self.by_block: dict[str, Window] = {}  # block id → its window

    def times_before(self, until_ms: int) -> list[int]:
        return [s.at_ms for s in self.pending if s.at_ms < until_ms]

    def due(self, t_ms: int) -> bool:
        return bool(self.pending) and self.pending[0].at_ms <= t_ms

    async def run_due(self, t_ms: int) -> None:
        """Every step due at or before ``t_ms``, in script order, on the clock at ``t_ms``."""
        if not self.due(t_ms):
            return
        await self.engine.set_clock(target_ms=t_ms)
        while self.due(t_ms):
            await self._run(self.pending.popleft(), t_ms)

    # ------------------------------------------------------------------ a step
    async def _run(self, step: Step, t_ms: int) -> None:
        body = dict(step.body)
        subject = ""
        if step.after is not None:
            ref = self.answers.get(step.after)
            if ref is None:  # what it acts on was refused or skipped
                self._skip(step, f"{step.after} did not succeed")
                return
            body["amendment_id" if step.op == StepOp.APPROVE else "block_id"] = ref["id"]
        if step.target in (BlockTarget.TOP_PERSON, BlockTarget.TOP_SKU):
            chosen = self._choose(step)
            if chosen is None:
                self._skip(step, "no redemption to choose from yet")
                return
            body |= chosen
        if step.op == StepOp.BLOCK:
            subject = str(body.get("person_id") or f"{body['platform']}/{body['sku']}")
        before = self._tranches() if step.op == StepOp.APPROVE else None
        try:
            out = await self.engine.operate(step.op, self.cid, body, step.by)
        except LijianError as exc:
            out = Outcome(error_status(exc), {"code": exc.code, "detail": exc.detail})
        rec = StepRecord(step, out.status, out.body, subject, before)
        self.records.append(rec)
        if out.status >= 300:
            return
        self.answers[step.name] = out.body
        if step.op == StepOp.APPROVE:
            rec.after = self._tranches()
            days = {x["date"] for x in out.body.get("split", [])}
            for snap in (rec.before, rec.after):
                assert snap is not None
                snap["days"] = {d: v for d, v in snap["days"].items() if d in days}
        self._track(step, out.body, subject, t_ms)

    def _skip(self, step: Step, why: str) -> None:
        self.records.append(StepRecord(step, 0, {"code": "skipped", "detail": why}))

    def _track(self, step: Step, body: dict[str, Any], subject: str, t_ms: int) -> None:
        if step.op == StepOp.PAUSE:
            self.pause = Window(step.name, "pause", "", t_ms)
            self.windows.append(self.pause)
        elif step.op == StepOp.RESUME and self.pause is not None:
            self.pause.to_ms, self.pause = t_ms, None
        elif step.op == StepOp.BLOCK:
            w = Window(step.name, str(body["kind"]), subject, t_ms)
            self.windows.append(w)
            self.by_block[body["id"]] = w
            if body["kind"] == "person":
                self.persons[body["person_id"]] = w
            else:
                self.skus[(body["platform"], body["sku"])] = w
        elif step.op == StepOp.LIFT:
            w = self.by_block[body["id"]]
            w.to_ms = t_ms
            if body["kind"] == "person":
                self.persons.pop(body["person_id"], None)
            else:
                self.skus.pop((body["platform"], body["sku"]), None)

    def _book(self) -> Book:
        return self.engine.ledger.books[self.cid]

    def _choose(self, step: Step) -> dict[str, Any] | None:
        """The subject of a rule-chosen block, read from the ledger now: most
        redemptions so far (not voided or expired, as the ledger counts them), ties to
        the smallest id, skipping whoever is blocked already."""
        b = self._book()
        blocked = self.engine.ledger.changes
        if step.target == BlockTarget.TOP_PERSON:
            best: tuple[int, str] | None = None
            for p in b.persons.values():
                if p.count_total == 0 or (self.cid, p.person_id) in blocked.persons:
                    continue
                if step.person_kind and self.kinds.get(p.person_id) != step.person_kind:
                    continue
                key = (-p.count_total, p.person_id)
                if best is None or key < best:
                    best = key
            return None if best is None else {"kind": "person", "person_id": best[1]}
        counts: Counter[tuple[str, str]] = Counter()
        for r in self.engine.ledger.redemptions.values():
            if r.campaign_id == self.cid:
                counts.update({(r.platform, sku) for sku, _, _ in r.lines})
        ranked = sorted(
            (k for k in counts if (self.cid, *k) not in blocked.skus),
            key=lambda k: (-counts[k], k),
        )
        if not ranked:
            return None
        platform, sku = ranked[0]
        return {"kind": "sku", "platform": platform, "sku": sku}

    def _tranches(self) -> dict[str, Any]:
        """The campaign's budget and each day's tranche, as the ledger holds them."""
        b = self._book()
        days = {
            d: {
                "state": t.state,
                "released_fen": t.released_fen,
                "available_fen": t.available_fen,
                "granted_fen": t.granted_fen,
                "free_fen": free_fen(b, d),
            }
            for d, t in b.tranches.items()
        }
        return {"budget_fen": b.budget_fen, "days": days}

    # -------------------------------------------------------------- arrivals
    def observe(self, orders: list[Order], outs: list[Outcome]) -> None:
        """Count one tick's arrivals that met a pause or a block (after ``run_due``)."""
        if self.pause is None and not self.persons and not self.skus:
            return
        for order, o in zip(orders, outs, strict=True):
            hit: list[Window] = []
            if self.pause is not None:
                hit.append(self.pause)
            w = self.persons.get(order.person.id)
            if w is not None:
                hit.append(w)
            for item in order.items:
                w = self.skus.get((order.platform, item.sku))
                if w is not None and w not in hit:
                    hit.append(w)
            for w in hit:
                w.arrivals += 1
                if o.status == 201:
                    w.grants += 1
                elif o.status == 200:
                    w.declines += 1
                    w.declines_by_reason.update(r["code"] for r in o.body["reasons"])

    # ---------------------------------------------------------------- result
    def result(self) -> dict[str, Any]:
        """What the report needs (call on the engine's loop at the end of the run): the
        steps and their answers, the windows, and the ledger's own lists."""
        b = self._book()
        tz = b.schedule.tz
        lists = {w: operations_view(self.engine.ledger, self.cid, w)[w] for w in LISTS}
        steps = []
        for r in self.records:
            s = r.step
            row: dict[str, Any] = {
                "action": s.action,
                "step": s.name,
                "op": s.op,
                "at": iso(s.at_ms, tz),
                "by": s.by,
                "status": r.status,
            }
            if r.status >= 300 or r.status == 0:
                row["code"] = r.body.get("code")
                row["detail"] = r.body.get("detail")
            else:
                row["id"] = r.body.get("id") or r.body.get("change_id")
            if r.subject:
                row["subject"] = r.subject
            if r.before is not None and r.after is not None:
                row["before"], row["after"] = r.before, r.after
            steps.append(row)
        windows = [
            {
                "step": w.name,
                "kind": w.kind,
                "subject": w.subject,
                "from": iso(w.from_ms, tz),
                "to": iso(w.to_ms, tz),
                "arrivals": w.arrivals,
                "grants": w.grants,
                "declines": w.declines,
                "declines_by_reason": dict(sorted(w.declines_by_reason.items())),
            }
            for w in self.windows
        ]
        actions = [
            {"action": a.index, "id": a.label, "day": a.day, "date": a.date, "at": a.at,
             "do": a.kind, "text": a.text}
            for a in self.script.actions
        ]  # fmt: skip
        return {"actions": actions, "steps": steps, "windows": windows, **lists}


LISTS = ("amendments", "blocks", "changes")
OPERATOR_DECLINES = ("campaign_paused", "person_blocked", "sku_blocked")


BASELINE_FIELDS = ("released_fen", "granted_fen", "grants", "declines")


def add_baseline(summary: Summary, baseline: Summary) -> None:
    """Put beside each rehearsal day the same day of the baseline: the same seed, the
    same world, run through the engine without the script (what the actions changed)."""
    by_date = {d["date"]: d for d in baseline["days"]}
    for row in summary["rehearsal"]["days"]:
        day = by_date[row["date"]]
        row["baseline"] = dict(zip(BASELINE_FIELDS, _baseline_day(day), strict=True))
    t = baseline["totals"]
    summary["rehearsal"]["baseline_totals"] = {
        "granted_fen": t["granted_fen"],
        "grants": t["grants"],
        "declines": t["declines"],
    }


def _baseline_day(day: DaySummary) -> tuple[int, int, int, int]:
    """A baseline day's figures, in the order of ``BASELINE_FIELDS``."""
    return day["released_fen"], day["granted_fen"], day["grants"], day["declines"]


def rehearsal_days(result: dict[str, Any], days: list[DaySummary]) -> list[dict[str, Any]]:
    """Per simulated day: the actions taken, the operators' declines, and the money the
    applied amendments moved on that day's tranche (their split, as the ledger records
    it), beside what the day released and granted."""
    amended: Counter[str] = Counter()
    withdrawn: Counter[str] = Counter()
    for a in result["amendments"]:
        for part in a.get("split", []):
            if "delta_fen" in part:
                amended[part["date"]] += part["delta_fen"]
            else:
                withdrawn[part["date"]] += part["withdrawn_fen"]
    out = []
    for d in days:
        date = d["date"]
        row: dict[str, Any] = {
            "date": date,
            "actions": [a["action"] for a in result["actions"] if a["date"] == date],
        }
        for code in OPERATOR_DECLINES:
            row[code] = d["declines_by_reason"].get(code, 0)
        row |= {
            "first_release_fen": d["first_release_fen"],
            "amended_fen": amended[date],
            "withdrawn_fen": withdrawn[date],
            "released_fen": d["released_fen"],
            "granted_fen": d["granted_fen"],
            "grants": d["grants"],
        }
        out.append(row)
    return out
