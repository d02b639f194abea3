"""Drive the real engine through a whole campaign on a simulated (manual) clock.

The loop walks the tick grid of each day (:mod:`lijian.sim.arrivals`). On a tick it
moves the engine's clock to the tick (which runs releases, closes, rollovers, expiries
and quota restores), then submits the tick's arrivals, in arrival order, as one group
(they share a commit; their order is first come, first served), followed by the captures,
voids and refunds that fell due. The simulator is an async caller of the engine (like
the HTTP server): it runs on the engine's own event loop, so a tick costs no thread
hand-over, and a rush second costs one group commit, not thousands.

What happens after a grant is drawn when the grant comes back: payment fails (void after
a delay), the person walks away (the hold expires by itself after ``hold_ttl_s``) or pays
(capture after a delay); a captured order may later be returned in full or in part.
Every draw comes from a ``random.Random`` seeded from the simulation seed and a purpose
name, consumed in a fixed order, and the engine runs on the manual clock only: the
same seed gives the same ledger, entry for entry.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import copy
import datetime as dt
import heapq
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from lijian.clock import ManualClock
from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.schedule import Schedule, TrancheWindow
from lijian.core.settings import Settings
from lijian.core.status import RefundKind
from lijian.engine import Engine
from lijian.outcome import Outcome, error_status
from lijian.sim.arrivals import day_arrivals, sample_offsets_ms, tick_grid_ms
from lijian.sim.config import SimConfig, simulation_key
from lijian.sim.metrics import collect_figures
from lijian.sim.orders import CHANNEL, OrderFactory
from lijian.sim.population import (
    Population,
    SyntheticCatalog,
    build_catalog,
    build_population,
    load_fence,
)
from lijian.sim.rehearsal import Rehearsal
from lijian.sim.results import Counters, DayLog, SimRun
from lijian.sim.script import Script

MS_PER_MIN = 60_000
DRAIN_AFTER_CLOSE_S = 120  # past the last hold TTL, so every hold has ended
MAX_TICK_REQUESTS = 50_000  # one tick's group; a bigger rush is split (still in order)
MAX_EVENTS_PER_TICK = 50_000
MAX_REDRAWS = 100


class Progress(Protocol):
    """What the simulator reports while it runs (rich bars in the CLI, nothing in tests)."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, label: str, n: int) -> None: ...

    def note(self, text: str) -> None: ...


class NullProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, label: str, n: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass(slots=True)
class World:
    """The synthetic world a simulation (or a forecast) draws from."""

    catalog: SyntheticCatalog
    population: Population
    factory: OrderFactory


def stream(cfg: SimConfig, purpose: str) -> random.Random:
    """An independent, reproducible random stream per purpose: changing how often one
    behaviour is drawn does not shift the draws of the others."""
    return random.Random(f"{cfg.seed}:{purpose}")


def build_world(settings: Settings, cfg: SimConfig, progress: Progress | None = None) -> World:
    progress = progress or NullProgress()
    fence = load_fence(settings.campaign.city_adcode)
    progress.start("catalogue", cfg.catalog_skus)
    catalog = build_catalog(cfg, stream(cfg, "catalog"))
    progress.advance("catalogue", cfg.catalog_skus)
    progress.start("population", cfg.persons)
    population = build_population(cfg, fence, stream(cfg, "population"))
    progress.advance("population", cfg.persons)
    return World(catalog, population, OrderFactory(settings.id, cfg, catalog))


def campaign_windows(settings: Settings, cfg: SimConfig) -> list[TrancheWindow]:
    windows = Schedule(settings).windows
    return windows[: cfg.days] if cfg.days else windows


def fresh_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class FollowUp(StrEnum):
    """What the simulated channel does with a grant later (capture and void are also the
    engine's method names for ``run_many``)."""

    CAPTURE = "capture"
    VOID = "void"
    REFUND_FULL = "refund_full"
    REFUND_PARTIAL = "refund_partial"


class _Event(NamedTuple):
    """A capture, void or refund due at ``due_ms`` (a tuple: the heap compares it fast;
    ``seq`` breaks ties in scheduling order, so nothing else is ever compared)."""

    due_ms: int
    seq: int
    kind: FollowUp
    redemption_id: str
    payable_fen: int


@dataclass(slots=True)
class _TickOut:
    redeemed: list[Outcome]
    calls: list[Outcome]
    refunds: list[Outcome]
    available: tuple[int, int] | None


def _as_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, LijianError):
        return Outcome(error_status(exc), {"code": exc.code, "detail": exc.detail})
    raise exc


async def _tick(
    engine: Engine,
    clock: ManualClock,
    campaign_id: str,
    now_ms: int,
    requests: list[tuple[Order, str, str, str]],
    calls: list[tuple[str, str]],
    refunds: list[tuple[str, RefundRequest, str, str]],
    sample: bool,
    quiet: bool,
) -> _TickOut:
    """One simulated moment, on the engine's loop thread.

    ``quiet``: the driver knows that no timed event (open, close, expiry, restore) falls
    between the previous tick and this one. Then moving the clock is all there is to do
    (the batch these commands form starts at the new time), which saves a round through
    the writer on most busy ticks. Otherwise ``set_clock`` applies what is due *before*
    the arrivals are evaluated, so that an arrival never sees a stale tranche or cap."""
    if quiet and (requests or calls or refunds):
        clock.set_ms(now_ms)
    else:
        await engine.set_clock(target_ms=now_ms)
    # Queue order is: this tick's arrivals, then its captures and voids, then its refunds.
    # The arrivals are evaluated and queued synchronously below, so what they see cannot
    # depend on how the writer batches the rest (determinism). The helper tasks are
    # created first only so that they queue their commands before the writer's next turn:
    # the whole tick then usually shares one commit (fewer thread hand-offs), which is
    # speed, not semantics.
    calls_fut = asyncio.ensure_future(engine.run_many(calls)) if calls else None
    refund_fut = (
        asyncio.gather(
            *(engine.refund(rid, req, CHANNEL, key, fp) for rid, req, key, fp in refunds),
            return_exceptions=True,
        )
        if refunds
        else None
    )
    redeemed = await engine.outcomes(engine.submit_redemptions(requests))
    call_outs: list[Outcome] = await calls_fut if calls_fut is not None else []
    refund_outs: list[Outcome] = []
    if refund_fut is not None:
        for r in await refund_fut:
            refund_outs.append(r if isinstance(r, Outcome) else _as_outcome(r))
    available = None
    if sample:
        t = engine.ledger.books[campaign_id].open_tranche()
        available = (t.available_fen, t.released_fen) if t is not None else None
    return _TickOut(redeemed, call_outs, refund_outs, available)


class Driver:
    """One simulation run: owns the engine, the event queue and the random streams."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        cfg: SimConfig,
        world: World,
        progress: Progress,
        rehearsal: Rehearsal | None = None,
    ) -> None:
        self.engine = engine
        self.rehearsal = rehearsal  # scripted operator actions (lijian.sim.rehearsal)
        assert isinstance(engine.clock, ManualClock), "the simulator moves a manual clock"
        self.clock: ManualClock = engine.clock
        self.settings = settings
        self.cid = settings.id
        self.cfg = cfg
        self.world = world
        self.progress = progress
        self.rng_arrivals = stream(cfg, "arrivals")
        self.rng_who = stream(cfg, "who")
        self.rng_orders = stream(cfg, "orders")
        self.rng_pay = stream(cfg, "payment")
        self.rng_refund = stream(cfg, "refunds")
        self.rng_redraw = stream(cfg, "redraw")
        # Persons told person_cap_reached, by person index (a byte each, as ``tried``).
        self.gave_up = bytearray(len(world.population.profiles))
        self.who_of: list[int] = []  # the persons of the tick's requests, in order
        self.events: list[_Event] = []
        self.event_seq = 0
        self.counters = Counters()
        # Who arrived at least once, by person index (a byte each, not a set of ids).
        self.tried = bytearray(len(world.population.profiles))
        self.ttl_ms = settings.limits.hold_ttl_s * 1000
        # What the driver knows of the ledger's timed events, to tell quiet ticks apart:
        sched = Schedule(settings)
        self.schedule = sched
        self.transitions = sorted(t for w in sched.windows for t in (w.opens_at_ms, w.closes_at_ms))
        self.expiries: collections.deque[int] = collections.deque()  # abandoned holds
        self.restores: list[int] = []  # heap: midnights after refunds (quota restores)
        self.last_tick_ms = engine.clock.now_ms()

    def _quiet_until(self, t_ms: int) -> bool:
        """True if no timed event of the ledger can fall in (last tick, t_ms]."""
        last = self.last_tick_ms
        while self.expiries and self.expiries[0] <= last:
            self.expiries.popleft()
        while self.restores and self.restores[0] <= last:
            heapq.heappop(self.restores)
        i = bisect.bisect_right(self.transitions, last)
        nxt = self.transitions[i] if i < len(self.transitions) else 2**62
        if self.expiries:
            nxt = min(nxt, self.expiries[0])
        if self.restores:
            nxt = min(nxt, self.restores[0])
        return nxt > t_ms

    def _who(self, x: int) -> int:
        """A person whose quota the app shows as used up does not come back: someone else
        comes instead (so a day's arrivals stay as the model says). By person index."""
        for _ in range(MAX_REDRAWS):
            if not self.gave_up[x]:
                return x
            x = self.world.population.pick(self.rng_redraw).index
        return x

    async def finish(self, log: DayLog, end_ms: int, open_ms: int) -> None:
        due: list[_Event] = []
        while self.events and len(due) < MAX_EVENTS_PER_TICK:
            due.append(heapq.heappop(self.events))
        assert all(e.due_ms <= end_ms for e in due), "events after the end were not scheduled"
        assert not self.events, "every due capture, void and refund was sent"
        self.who_of.clear()  # no arrivals on this tick
        await self._run_tick(log, end_ms, [], due, False, end_ms, open_ms)

    def _push(self, due_ms: int, kind: FollowUp, rid: str, payable_fen: int = 0) -> None:
        self.event_seq += 1
        heapq.heappush(self.events, _Event(due_ms, self.event_seq, kind, rid, payable_fen))

    def _error(self, code: str) -> None:
        self.counters.errors[code] = self.counters.errors.get(code, 0) + 1

    async def run_day(self, index: int, w: TrancheWindow, until_ms: int, end_ms: int) -> DayLog:
        cfg, curve = self.cfg, self.cfg.curve
        log = DayLog(w.date.isoformat())
        n = day_arrivals(cfg, index, w.date)
        window_s = (w.closes_at_ms - w.opens_at_ms) / 1000
        # Drawn in blocks (lijian.sim.draws): the same numbers as one draw per arrival.
        offsets = sorted(sample_offsets_ms(curve, self.rng_arrivals, window_s, n))
        who = self.world.population.pick_indices(self.rng_who, n)
        log.arrivals = n
        log.preopen_arrivals = bisect.bisect_left(offsets, 0)
        self.progress.start(f"day {w.date.isoformat()}", n)
        day_tag = w.date.strftime("%Y%m%d")
        ticks = list(tick_grid_ms(w.opens_at_ms, w.closes_at_ms, until_ms, curve.preopen_s))
        acting = self.rehearsal
        if acting is not None:  # a tick at each operator action: it acts at its second
            ticks = sorted(set(ticks).union(acting.times_before(until_ms)))
        profiles = self.world.population.profiles
        make, rng_orders = self.world.factory.make_order, self.rng_orders
        gave_up, tried = self.gave_up, self.tried
        who_of = self.who_of
        j = 0
        for k, t_ms in enumerate(ticks):
            next_ms = ticks[k + 1] if k + 1 < len(ticks) else until_ms
            lo = j
            # The arrivals before the next tick (offsets are sorted), at most a group's.
            hi = min(n, lo + MAX_TICK_REQUESTS)
            j = bisect.bisect_left(offsets, next_ms - w.opens_at_ms, lo, hi)
            due: list[_Event] = []
            while self.events and self.events[0].due_ms <= t_ms and len(due) < MAX_EVENTS_PER_TICK:
                due.append(heapq.heappop(self.events))
            sample = (
                w.opens_at_ms <= t_ms < w.closes_at_ms and (t_ms - w.opens_at_ms) % MS_PER_MIN == 0
            )
            if lo == j and not due and not sample and not (acting and acting.due(t_ms)):
                continue
            if acting is not None:  # before the tick's arrivals: they see the change
                await acting.run_due(t_ms)
            requests = []
            who_of.clear()  # the tick's persons by index, beside its requests
            for picked in who[lo:j]:
                x = self._who(picked) if gave_up[picked] else picked
                tried[x] = 1
                who_of.append(x)
                order = make(rng_orders, profiles[x], day_tag)
                oid = order.order_id
                requests.append((order, CHANNEL, "k-" + oid, oid))
            await self._run_tick(log, t_ms, requests, due, sample, end_ms, w.opens_at_ms)
            self.progress.advance("day", j - lo)
            self.progress.advance("campaign", j - lo)
        assert j == n, "every arrival of the day was submitted"
        return log

    def persons_tried(self) -> set[str]:
        """The ids of the persons who arrived at least once."""
        profiles = self.world.population.profiles
        return {profiles[i].person.id for i, t in enumerate(self.tried) if t}

    async def _run_tick(
        self,
        log: DayLog,
        t_ms: int,
        requests: list[tuple[Order, str, str, str]],
        due: list[_Event],
        sample: bool,
        end_ms: int,
        open_ms: int,
    ) -> None:
        call_events = [e for e in due if e.kind in (FollowUp.CAPTURE, FollowUp.VOID)]
        calls: list[tuple[str, str]] = [(e.kind, e.redemption_id) for e in call_events]
        refunds = []
        for e in due:
            if e.kind not in (FollowUp.REFUND_FULL, FollowUp.REFUND_PARTIAL):
                continue
            returned_fen = e.payable_fen  # a full return: the whole payable (R17)
            if e.kind == FollowUp.REFUND_PARTIAL:  # R18: a share of the payable, by value
                lo, hi = self.cfg.partial_refund_share
                returned_fen = max(1, int(e.payable_fen * self.rng_refund.uniform(lo, hi)))
            req = RefundRequest(f"{e.redemption_id}-r1", payable_fen=returned_fen)
            refunds.append((e.redemption_id, req, f"rf-{e.redemption_id}", req.refund_id))
        quiet = self._quiet_until(t_ms)
        out = await _tick(
            self.engine, self.clock, self.cid, t_ms, requests, calls, refunds, sample, quiet
        )
        self.last_tick_ms = t_ms
        self._after_redeem(log, t_ms, requests, out.redeemed)
        if self.rehearsal is not None:
            self.rehearsal.observe([r[0] for r in requests], out.redeemed)
        for e, o in zip(call_events, out.calls, strict=True):
            if o.status != 200:
                self._error(f"{e.kind}:{o.body.get('code')}")
            elif e.kind == FollowUp.CAPTURE:
                self.counters.captures += 1
                self._maybe_refund(e.redemption_id, e.payable_fen, t_ms, end_ms)
            else:
                self.counters.voids += 1
        if refunds:  # a quota may come back at the next midnight (R17)
            heapq.heappush(self.restores, self.schedule.next_midnight_ms(t_ms))
        for o in out.refunds:
            if o.status != 201:
                self._error(f"refund:{o.body.get('code')}")
            elif o.body["kind"] == RefundKind.FULL:
                self.counters.refunds_full += 1
            else:
                self.counters.refunds_partial += 1
        if out.available is not None:
            avail, released = out.available
            log.burndown.append(((t_ms - open_ms) // MS_PER_MIN, avail, released))

    def _after_redeem(
        self,
        log: DayLog,
        t_ms: int,
        requests: list[tuple[Order, str, str, str]],
        outs: list[Outcome],
    ) -> None:
        """Count the tick's answers and draw what each grant's payment does. One pass per
        arrival at city scale: most answers are declines, counted with the lookups bound
        once; the payment draws are those of one grant at a time, in request order."""
        cfg = self.cfg
        assert len(outs) == len(requests) == len(self.who_of), "one answer per request"
        by_reason = log.declines_by_reason
        gave_up, who_of = self.gave_up, self.who_of
        pay_random, pay_randint = self.rng_pay.random, self.rng_pay.randint
        fail_rate = cfg.pay_fail_rate
        abandon_below = cfg.pay_fail_rate + cfg.abandon_rate
        delay_lo, delay_hi = cfg.pay_delay_s
        grants = declines = 0
        for n, o in enumerate(outs):
            status = o.status
            if status == 200:
                declines += 1
                for r in o.body["reasons"]:
                    code = r["code"]
                    by_reason[code] = by_reason.get(code, 0) + 1
                    if code == "sold_out":
                        if log.first_sold_out_ms is None:
                            log.first_sold_out_ms = t_ms
                    elif code == "person_cap_reached":
                        gave_up[who_of[n]] = 1
            elif status == 201:
                grants += 1
                rid = o.body["id"]
                u = pay_random()
                delay_ms = pay_randint(delay_lo, delay_hi) * 1000
                if u < fail_rate:
                    self._push(t_ms + delay_ms, FollowUp.VOID, rid)
                elif u < abandon_below:
                    self.counters.abandoned += 1  # nobody calls: the hold expires
                    self.expiries.append(t_ms + self.ttl_ms)
                else:
                    self._push(t_ms + delay_ms, FollowUp.CAPTURE, rid, int(o.body["payable_fen"]))
            else:
                log.errors += 1
                self._error(f"redeem:{o.body.get('code')}")
        log.grants += grants
        log.declines += declines

    def _maybe_refund(self, rid: str, payable_fen: int, t_ms: int, end_ms: int) -> None:
        cfg = self.cfg
        u = self.rng_refund.random()
        delay_ms = self.rng_refund.randint(*cfg.refund_delay_s) * 1000
        if u >= cfg.full_refund_rate + cfg.partial_refund_rate:
            return
        if t_ms + delay_ms >= end_ms:
            self.counters.refunds_after_end += 1
            return
        kind = FollowUp.REFUND_FULL if u < cfg.full_refund_rate else FollowUp.REFUND_PARTIAL
        self._push(t_ms + delay_ms, kind, rid, payable_fen)


def run_simulation(
    settings: Settings,
    cfg: SimConfig,
    db_path: Path,
    progress: Progress | None = None,
    world: World | None = None,
    script: Script | None = None,
) -> SimRun:
    """Run the campaign (or its first ``cfg.days`` days) through a fresh engine, with
    the operator actions of ``script`` (a rehearsal) if given."""
    cfg.check()
    progress = progress or NullProgress()
    world = world or build_world(settings, cfg, progress)
    fresh_db(db_path)
    return run_coroutine(_simulate(settings, cfg, db_path, progress, world, script))


def rehearse(
    settings: Settings,
    cfg: SimConfig,
    script: Script,
    db_path: Path,
    baseline_db_path: Path,
    progress: Progress | None = None,
    world: World | None = None,
) -> tuple[SimRun, SimRun]:
    """A rehearsal and its baseline: the same seed and world run with the script's
    operator actions and without them, so the report can show what the actions changed."""
    progress = progress or NullProgress()
    world = world or build_world(settings, cfg, progress)
    # The order factory numbers orders: the baseline starts from where the rehearsal does.
    same = World(world.catalog, world.population, copy.copy(world.factory))
    acted = run_simulation(settings, cfg, db_path, progress, world, script)
    return acted, run_simulation(settings, cfg, baseline_db_path, progress, same)


def simulation_end_ms(settings: Settings, windows: list[TrancheWindow]) -> int:
    """When a run ends: past the last close, the last hold's expiry and a drain."""
    return windows[-1].closes_at_ms + (settings.limits.hold_ttl_s + DRAIN_AFTER_CLOSE_S) * 1000


async def _simulate(
    settings: Settings,
    cfg: SimConfig,
    db_path: Path,
    progress: Progress,
    world: World,
    script: Script | None,
) -> SimRun:
    """The whole run on one event loop, the engine's: the simulator is an async caller
    (like the HTTP server), so a tick costs no thread hand-over, only the writer's turn."""

    windows = campaign_windows(settings, cfg)
    preopen_ms = cfg.curve.preopen_s * 1000
    start_ms = windows[0].opens_at_ms - preopen_ms - MS_PER_MIN
    if script is not None and script.first_ms is not None:  # an action before day one's rush
        start_ms = min(start_ms, script.first_ms)
    clock = ManualClock(start_ms)
    engine = Engine(
        [settings],
        db_path,
        clock,
        synchronous=cfg.synchronous,
        background=False,
        ledger_key=simulation_key(cfg.seed),
    )
    await engine.start()
    try:
        progress.start("upload catalogue", len(world.catalog.rows))
        await engine.catalog_upsert(world.catalog.rows)
        progress.advance("upload catalogue", len(world.catalog.rows))
        profiles = world.population.profiles
        kinds = dict(zip([p.person.id for p in profiles], [p.kind for p in profiles], strict=True))
        acting = None if script is None else Rehearsal(engine, settings.id, script, dict(kinds))
        driver = Driver(engine, settings, cfg, world, progress, acting)
        end_ms = simulation_end_ms(settings, windows)
        totals = sum(day_arrivals(cfg, i, w.date) for i, w in enumerate(windows))
        progress.start("campaign", totals)
        logs: list[DayLog] = []
        for i, w in enumerate(windows):
            until = windows[i + 1].opens_at_ms - preopen_ms if i + 1 < len(windows) else end_ms
            log = await driver.run_day(i, w, until, end_ms)
            logs.append(log)
            progress.note(_day_note(log, w, settings))
        # A last tick at end_ms sends what fell due after the grid's last tick and moves
        # the clock past every hold's expiry: no hold is left open.
        await driver.finish(logs[-1], end_ms, windows[-1].opens_at_ms)
        figures = collect_figures(engine, settings.id)
        if acting is not None:
            assert not acting.pending, "every step of the script ran"
            figures["rehearsal"] = acting.result()
    finally:
        await engine.aclose()
    return SimRun(
        settings,
        cfg,
        db_path,
        windows,
        logs,
        driver.counters,
        driver.persons_tried(),
        kinds,
        figures,
    )


def _day_note(log: DayLog, w: TrancheWindow, settings: Settings) -> str:
    if log.first_sold_out_ms is None:
        sold = "not sold out"
    else:
        at = dt.datetime.fromtimestamp(log.first_sold_out_ms / 1000, settings.tz)
        sold = f"sold out {at:%H:%M:%S}"
    return f"{w.date}: {log.arrivals:,} arrivals, {log.grants:,} grants, {sold}"


_T = TypeVar("_T")


def run_coroutine(coro: Coroutine[object, None, _T]) -> _T:
    """``asyncio.run``, also from a thread that already runs an event loop (a caller
    inside async code, a test runner, Playwright's sync API): then in a fresh thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, "lijian-sim") as pool:
        return pool.submit(asyncio.run, coro).result()
