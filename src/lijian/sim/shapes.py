"""Claim campaigns in the simulator: the claimed voucher (领券), the lottery (摇号) and
the trade-in qualification (以旧换新资格), each run through the real engine.

A campaign with ``[claims] mode = "claim"`` is simulated as its people would live it:
at the claim opening they claim (or, in a lottery, register; the engine draws at
``draw_at`` as the clock passes it), then those holding a voucher buy with it within a
few hours, or never use it (``never_use_share``): their vouchers expire unused at
``valid_until`` and the engine gives the money back. A trade-in campaign (per_category)
claims a qualification for one category, then buys one item of it with a serial.

Who claims is the rush population of :mod:`lijian.sim.population_bots` (people, and bot
owners running many accounts that share devices and a card): every account claims once
a day; bots always use what they get (their vouchers are sold on). Each shape runs twice,
without and with identity linking (``[identity] link_by``), on a fresh SQLite ledger and a
manual clock; the day's stock is scaled to ``stock_share`` vouchers per person so that a
small run sells out as a real one does. Every draw comes from a ``random.Random`` seeded
from the seed and a purpose: the same seed gives the same ledger and the same figures.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import heapq
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from lijian.clock import ManualClock
from lijian.core.claims import ClaimRequest
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.core.schedule import Schedule
from lijian.core.settings import Settings, parse_settings
from lijian.core.status import VoucherStatus
from lijian.engine import Engine
from lijian.jsonish import Json
from lijian.sim.config import simulation_key
from lijian.sim.population import load_fence, sample_points
from lijian.sim.population_bots import Account, build_rush

MS_PER_S = 1000
TICK_MS = 100  # claims and purchases are grouped by 100 ms (one group commit each)
USE_DELAY_S = (600, 6 * 3600)  # a voucher is used 10 min to 6 h after it is held
CAPTURE_DELAY_S = 60  # paid a minute after the order
LINK_BY = ("device_id", "card_hash", "phone_hash")
TRADEIN_PRICE_FEN = (200_000, 599_900)  # one unit of 2,000-5,999 CNY (under the ceiling)
PAYABLE_SIGMA = 0.4
MAX_PEOPLE = 200_000
MAX_DAYS = 7
MAX_EVENTS = 5_000_000  # a bound on the run's queue, far above what MAX_PEOPLE can send
AFTER_EXPIRY_MS = 60_000


class WriterFailed(RuntimeError):
    """The engine's writer stopped during a run (its reason is in the message)."""


@dataclass(frozen=True, slots=True)
class ShapeConfig:
    people: int = 2_000
    bot_share: float = 0.05  # of the accounts
    never_use_share: float = 0.15  # of people with a voucher: it expires unused
    stock_share: float = 0.5  # vouchers a day per person
    days: int = 1
    seed: int = 2025

    def check(self) -> ShapeConfig:
        bad = []
        if not 1 <= self.people <= MAX_PEOPLE:
            bad.append(f"persons must be in [1, {MAX_PEOPLE}]")
        if not 0 <= self.bot_share < 1:
            bad.append("bot share must be in [0, 1)")
        if not 0 <= self.never_use_share <= 1:
            bad.append("never-use share must be in [0, 1]")
        if not 0 < self.stock_share <= 10:
            bad.append("stock share must be in (0, 10]")
        if not 1 <= self.days <= MAX_DAYS:
            bad.append(f"days must be in [1, {MAX_DAYS}]")
        if bad:
            raise ValueError("; ".join(bad))
        return self


@dataclass(slots=True)
class ShapeResult:
    campaign_id: str
    shape: str  # claim, lottery, tradein
    link: bool
    days: int
    vouchers_per_day: int
    registered: int  # lottery registrations
    lost: int  # registrations the draw did not pick
    claimed: int  # vouchers handed out (claimed, or won at the draw)
    used: int
    expired_unused: int
    left: int  # claimed or held at the end (must be 0: every voucher ended)
    claimed_fen: int  # the value the claims reserved
    granted_fen: int  # discounts of the captured orders: money that reached people
    expired_fen: int  # value of vouchers that expired unused (given back)
    reached_share: float  # granted ÷ claimed value
    bots_fen: int
    bot_share: float  # of granted_fen
    people_served: int  # people (not bots) whose voucher was used
    people: int
    sold_out_after_s: float | None  # day one: first claims_sold_out after the claim open
    audit_ok: bool = False
    failed: str | None = None  # the engine stopped: figures up to then
    declines: dict[str, int] = field(default_factory=dict)


def shape_of(s: Settings) -> str:
    c = s.claims
    if c.per_category:
        return "tradein"
    return "lottery" if c.allocation == "lottery" else "claim"


def scaled(base: Settings, cfg: ShapeConfig, link: bool) -> tuple[Settings, int]:
    """The campaign with ``stock_share`` vouchers a day per person (an equal split of
    the budget over its days) and linking on or off."""
    per_day = max(1, round(cfg.stock_share * cfg.people))
    n_days = len(Schedule(base).windows)
    raw = copy.deepcopy(dict(base.raw))  # the ledger keeps (and replays) the raw document
    raw["campaign"] = {
        **raw["campaign"],
        "tranches": "equal",
        "budget_fen": per_day * base.claims.voucher_value_fen * n_days,
    }
    raw["identity"] = {**raw.get("identity", {}), "link_by": list(LINK_BY) if link else []}
    s = parse_settings(raw)
    return s, per_day


@dataclass(order=True, slots=True)
class _Event:
    t_ms: int
    seq: int
    kind: str = field(compare=False)  # claim, drawn, buy, capture
    account: int = field(compare=False)
    ref: str = field(compare=False, default="")  # voucher or redemption id


class ShapeRun:
    """One run: a fresh engine, the population's claims and purchases, the figures."""

    def __init__(self, s: Settings, cfg: ShapeConfig, eng: Engine) -> None:
        self.s, self.cfg, self.eng = s, cfg, eng
        self.pop = build_rush(cfg.people, cfg.bot_share, cfg.seed)
        self.rng_use = random.Random(f"{cfg.seed}:shapes:use")
        self.rng_buy = random.Random(f"{cfg.seed}:shapes:buy")
        self.rng_cat = random.Random(f"{cfg.seed}:shapes:category")
        fence = load_fence(s.campaign.city_adcode)
        lng, lat = sample_points(fence, random.Random(f"{cfg.seed}:shapes:where"), 1, True)[0]
        self.where = Location(lng, lat, "gcj02")
        self.address = Address(sorted(fence.district_adcodes)[0])
        self.platform = s.campaign.platforms[0]
        self.channel = s.campaign.payment_channels[0]
        self.categories = sorted(s.eligibility.categories) or ["everyday"]
        self.heap: list[_Event] = []
        self.seq = 0
        self.registered = 0
        self.declines: dict[str, int] = {}
        self.first_sold_out_ms: int | None = None
        self.voucher_owner: dict[str, int] = {}  # voucher → account
        self.voucher_cat: dict[str, str] = {}

    def push(self, t_ms: int, kind: str, account: int, ref: str = "") -> None:
        assert len(self.heap) < MAX_EVENTS, "the run's queue is bounded"
        self.seq += 1
        heapq.heappush(self.heap, _Event(t_ms, self.seq, kind, account, ref))

    def person(self, a: Account) -> Person:
        return Person(a.account_id, True, a.device_id, a.card_hash, a.phone_hash)

    def schedule_claims(self, day_index: int, claim_open_ms: int) -> None:
        """Every account claims once on the day: people at their reaction time after the
        claim opening, bots in its first 100 ms (population_bots' first request)."""
        first: dict[int, int] = {}
        for r in self.pop.requests:
            first.setdefault(r.account, r.offset_ms)
        for acc in range(len(self.pop.accounts)):
            t = claim_open_ms + first.get(acc, 0)
            self.push(t - t % TICK_MS, "claim", acc, str(day_index))

    async def run(self, claim_opens_ms: list[int]) -> None:
        for i, t in enumerate(claim_opens_ms):
            self.schedule_claims(i, t)
        while self.heap:
            t = self.heap[0].t_ms
            batch: list[_Event] = []
            while self.heap and self.heap[0].t_ms == t:
                batch.append(heapq.heappop(self.heap))
            if self.eng.writer.failed is not None:  # the engine stopped: say why, stop
                raise WriterFailed(repr(self.eng.writer.failed))
            await self.eng.set_clock(t)
            await self._claims(t, [e for e in batch if e.kind == "claim"])
            for e in batch:
                if e.kind == "drawn":
                    self._drawn(t, e)
            await self._buys(t, [e for e in batch if e.kind == "buy"])
            caps = [e for e in batch if e.kind == "capture"]
            if caps:
                outs = await self.eng.run_many([("capture", e.ref) for e in caps])
                for o in outs:
                    if o.status != 200:
                        self._decline(f"capture:{o.body.get('code')}")

    def _decline(self, code: str) -> None:
        self.declines[code] = self.declines.get(code, 0) + 1

    async def _claims(self, t_ms: int, events: list[_Event]) -> None:
        if not events:
            return
        calls = []
        for e in events:
            a = self.pop.accounts[e.account]
            cat = None
            if self.s.claims.per_category:
                cat = self.categories[self.rng_cat.randrange(len(self.categories))]
            req = ClaimRequest(self.person(a), self.where, cat)
            key = f"c-{e.account}-{e.ref}"
            calls.append(self.eng.claim(self.s.id, req, self.channel, key, key))
        # Created in arrival order, each queues on the writer before the next: first come.
        outs = await asyncio.gather(*calls)
        for e, o in zip(events, outs, strict=True):
            if o.status == 201:
                self._holding(t_ms, e.account, o.body["id"])
            elif o.status == 202:
                self.registered += 1
                vid = o.body["id"]
                draw_ms = self.eng.ledger.vouchers.by_id[vid].valid_until_ms
                self.push(draw_ms + MS_PER_S, "drawn", e.account, vid)
            else:
                for r in o.body.get("reasons", [{"code": o.body.get("code")}]):
                    self._decline(str(r["code"]))
                    if r["code"] == "claims_sold_out" and self.first_sold_out_ms is None:
                        self.first_sold_out_ms = t_ms

    def _drawn(self, t_ms: int, e: _Event) -> None:
        if self.eng.ledger.vouchers.by_id[e.ref].status == VoucherStatus.CLAIMED:
            self._holding(t_ms, e.account, e.ref)

    def _holding(self, t_ms: int, account: int, vid: str) -> None:
        """A person holding a voucher uses it a few hours later, or never."""
        v = self.eng.ledger.vouchers.by_id[vid]
        self.voucher_owner[vid] = account
        if v.category is not None:
            self.voucher_cat[vid] = v.category
        u = self.rng_use.random()
        delay_ms = self.rng_use.randint(*USE_DELAY_S) * MS_PER_S
        if not self.pop.accounts[account].is_bot and u < self.cfg.never_use_share:
            return  # never used: it expires at valid_until
        use_ms = min(t_ms + delay_ms, v.valid_until_ms - CAPTURE_DELAY_S * MS_PER_S * 2)
        self.push(max(t_ms + TICK_MS, use_ms - use_ms % TICK_MS), "buy", account, vid)

    def order(self, account: int, vid: str) -> Order:
        a = self.pop.accounts[account]
        cat = self.voucher_cat.get(vid, self.categories[0])
        if self.s.claims.per_category:
            price = self.rng_buy.randint(*TRADEIN_PRICE_FEN)
            item = Item(f"SHAPE-{cat}", 1, price, serial=f"SN-{vid}")
        else:
            tiers = self.s.discount.tiers
            floor = tiers[0].min_payable_fen if tiers else 10_000
            price = int(floor * 1.5 * math.exp(self.rng_buy.gauss(0, PAYABLE_SIGMA)))
            item = Item(f"SHAPE-{cat}", 1, max(floor, price))
        return Order(
            campaign_id=self.s.id,
            platform=self.platform,
            order_id=f"S-{vid}",
            payment_channel=self.channel,
            person=self.person(a),
            items=[item],
            device_location=self.where,
            delivery_address=self.address,
            voucher_id=vid,
        )

    async def _buys(self, t_ms: int, events: list[_Event]) -> None:
        if not events:
            return
        reqs = []
        for e in events:
            order = self.order(e.account, e.ref)
            reqs.append((order, self.channel, f"k-{order.order_id}", order.order_id))
        outs = await self.eng.redeem_many(reqs)
        for e, o in zip(events, outs, strict=True):
            if o.status == 201:
                self.push(t_ms + CAPTURE_DELAY_S * MS_PER_S, "capture", e.account, o.body["id"])
            else:
                for r in o.body.get("reasons", [{"code": o.body.get("code")}]):
                    self._decline(f"order:{r['code']}")

    def figures(self, link: bool, per_day: int, claim_open_ms: int) -> ShapeResult:
        vs = [v for v in self.eng.ledger.vouchers.by_id.values() if v.campaign_id == self.s.id]
        handed = [v for v in vs if v.status not in (VoucherStatus.REGISTERED, VoucherStatus.LOST)]
        used = [v for v in handed if v.status == VoucherStatus.USED]
        expired = [v for v in handed if v.status == VoucherStatus.EXPIRED]
        granted = sum(v.discount_fen for v in used)
        claimed_fen = sum(v.value_fen for v in handed)
        acc = {a.account_id: a for a in self.pop.accounts}
        bots_fen = sum(v.discount_fen for v in used if acc[v.person_id].is_bot)
        served = {v.person_id for v in used if not acc[v.person_id].is_bot}
        sold = self.first_sold_out_ms  # day one's only: later days open on a leftover
        after_s = None
        if sold is not None and sold - claim_open_ms < 86_400_000:
            after_s = (sold - claim_open_ms) / MS_PER_S
        return ShapeResult(
            self.s.id,
            shape_of(self.s),
            link,
            self.cfg.days,
            per_day,
            self.registered,
            sum(1 for v in vs if v.status == VoucherStatus.LOST),
            len(handed),
            len(used),
            len(expired),
            sum(1 for v in handed if v.status in (VoucherStatus.CLAIMED, VoucherStatus.HELD)),
            claimed_fen,
            granted,
            sum(v.value_fen for v in expired),
            granted / claimed_fen if claimed_fen else 0.0,
            bots_fen,
            bots_fen / granted if granted else 0.0,
            len(served),
            sum(1 for a in self.pop.accounts if not a.is_bot),
            after_s,
            declines=dict(sorted(self.declines.items())),
        )


def claim_open_ms(s: Settings, day: dt.date) -> int:
    c = s.claims
    minute = s.campaign.daily_open_min if c.claim_open_min is None else c.claim_open_min
    local = dt.datetime.combine(day, dt.time(0), s.tz) + dt.timedelta(minutes=minute)
    return int(local.timestamp() * MS_PER_S)


async def run_shape(base: Settings, cfg: ShapeConfig, db: Path, link: bool) -> ShapeResult:
    """One shape on a fresh ledger: the first ``cfg.days`` days' claims and purchases,
    then the clock past every voucher's ``valid_until`` (unused ones expire)."""
    if not base.claims.on:
        raise ValueError(f'campaign {base.id!r} has no [claims] mode = "claim"')
    s, per_day = scaled(base, cfg, link)
    windows = Schedule(s).windows[: cfg.days]
    opens = [claim_open_ms(s, w.date) for w in windows]
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clock = ManualClock(min(opens[0], windows[0].opens_at_ms) - 60_000)
    eng = Engine([s], db, clock, synchronous="OFF", background=False,
                 ledger_key=simulation_key(cfg.seed))  # fmt: skip
    await eng.start()
    try:
        run = ShapeRun(s, cfg, eng)
        rows = [(run.platform, f"SHAPE-{c}", c) for c in run.categories]
        await eng.catalog_upsert(rows, {c: i + 1 for i, c in enumerate(run.categories)})
        failed = None
        try:
            await run.run(opens)
            vs = [v for v in eng.ledger.vouchers.by_id.values() if v.campaign_id == s.id]
            last = max((v.valid_until_ms for v in vs), default=clock.now_ms())
            await eng.set_clock(max(last, clock.now_ms()) + AFTER_EXPIRY_MS)
        except WriterFailed as exc:
            failed = str(exc)
        res = run.figures(link, per_day, opens[0])
        res.failed = failed
    finally:
        await eng.aclose()
    return res


def run_shapes(settings: list[Settings], cfg: ShapeConfig, out_dir: Path) -> list[ShapeResult]:
    """Every campaign without and with linking, each audited from its ledger file."""
    from lijian.audit import audit_db

    cfg.check()
    out: list[ShapeResult] = []
    for s in settings:
        for link in (False, True):
            db = out_dir / f"shape-{s.id}{'-linked' if link else ''}.db"
            res = asyncio.run(run_shape(s, cfg, db, link))
            res.audit_ok = audit_db(db).ok
            out.append(res)
    return out


def as_dict(r: ShapeResult) -> Json:
    from dataclasses import asdict

    return asdict(r)
