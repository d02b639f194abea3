"""``lijian simulate --bots SHARE --compare-release``: what bots get under each release.

The same rush (``population_bots``: people, and bot owners running many accounts on
shared devices and cards) and the same seed run through the real engine several times:
first come, first served, and admission windows of 2 s and 10 s, each with and without
identity linking. Each run is a fresh SQLite ledger on a manual clock: the clock walks
the first ``SPAN_S`` seconds after the first day's open in ``TICK_MS`` steps, and each
step's requests are submitted in arrival order, as the HTTP server would queue them.
The window's draw seed is derived from the simulation seed (not drawn at random), so
the whole comparison is deterministic for a seed.

Figures per run: the share of the money that bots got, persons served (of the people who
asked), bot accounts served per bot owner, the Gini coefficient of the money over
everyone who asked (a bot owner counts once, with all its accounts' money), and the
time to sell out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from lijian.clock import ManualClock
from lijian.core.errors import LijianError
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.core.schedule import Schedule
from lijian.core.settings import IdentitySection, ReleaseSection, Settings
from lijian.engine import Engine
from lijian.jsonish import Json
from lijian.outcome import Outcome, error_status
from lijian.progress import counted
from lijian.sim.config import simulation_key
from lijian.sim.metrics import gini
from lijian.sim.population_bots import RushPopulation, build_rush

SPAN_S = 300  # the first five minutes after the open: the rush
TICK_MS = 10
CHANNEL = "unionpay"
PLATFORM = "jd"
SKU = "FAIR-1"
CATEGORY = "fresh_food"
TIANFU_SQUARE = (104.0657, 30.6574)  # GCJ-02, inside Chengdu
DELIVERY_ADCODE = "510104"
LINK_BY = ("device_id", "card_hash", "phone_hash")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    window_s: int
    link: bool
    as_configured: bool = False  # the campaign's own [release] and [identity]


VARIANTS = (
    Variant("first come, first served", 0, False),
    Variant("first come, first served + linking", 0, True),
    Variant("2 s window", 2, False),
    Variant("2 s window + linking", 2, True),
    Variant("10 s window", 10, False),
    Variant("10 s window + linking", 10, True),
)


@dataclass(slots=True)
class VariantResult:
    variant: str
    window_s: int
    link: bool
    granted_fen: int
    bots_fen: int
    bot_share: float  # of the money granted
    people_served: int
    people: int
    bot_accounts_served_per_owner: float
    gini: float
    sold_out_after_s: float | None
    requests: int
    grants: int


def variant_settings(base: Settings, v: Variant) -> Settings:
    """The campaign as given, with this variant's release and identity sections."""
    if v.as_configured:
        return base
    return replace(
        base,
        release=ReleaseSection(v.window_s),
        identity=IdentitySection(LINK_BY if v.link else ()),
    )


def _order(s: Settings, pop: RushPopulation, i: int) -> Order:
    r = pop.requests[i]
    a = pop.accounts[r.account]
    return Order(
        campaign_id=s.campaign.id,
        platform=PLATFORM,
        order_id=f"F-{a.account_id}-{r.n}",
        payment_channel=CHANNEL,
        person=Person(a.account_id, True, a.device_id, a.card_hash, a.phone_hash),
        items=[Item(SKU, 1, r.payable_fen)],
        device_location=Location(*TIANFU_SQUARE, crs="gcj02"),
        delivery_address=Address(DELIVERY_ADCODE),
    )


def draw_seed_source(sim_seed: int) -> Callable[[str, str], str]:
    """Seeds derived from the simulation seed: the same comparison every time."""

    def source(campaign_id: str, day: str) -> str:
        msg = f"{campaign_id}\n{day}".encode()
        return hmac.new(str(sim_seed).encode(), msg, hashlib.sha256).hexdigest()

    return source


async def run_variant(
    base: Settings, pop: RushPopulation, v: Variant, db: Path, sim_seed: int
) -> VariantResult:
    s = variant_settings(base, v)
    if db.exists():
        db.unlink()
    first = s.campaign.start_date
    tz = s.tz
    open_local = dt.datetime.combine(first, dt.time(0), tz) + dt.timedelta(
        minutes=s.campaign.daily_open_min
    )
    open_ms = int(open_local.timestamp() * 1000)
    clock = ManualClock(open_ms - 60_000)
    ledger_key = simulation_key(sim_seed)
    eng = Engine([s], db, clock=clock, synchronous="OFF", background=False, ledger_key=ledger_key)
    eng.windows.seed_source = draw_seed_source(sim_seed)
    await eng.start()
    try:
        await eng.catalog_upsert([(PLATFORM, SKU, CATEGORY)], {CATEGORY: 1})
        slots: list[tuple[int, Outcome | asyncio.Future[Any]]] = []
        # The clock moves only to ticks that have requests (and to the window's end):
        # an idle tick changes nothing, and skipping it keeps a run fast.
        ticks = sorted(
            {r.offset_ms // TICK_MS * TICK_MS for r in pop.requests if r.offset_ms < SPAN_S * 1000}
            | ({v.window_s * 1000} if v.window_s else set())
        )
        i, n = 0, len(pop.requests)
        for tick_ms in counted(ticks, len(ticks), f"the rush: {v.name}"):
            await eng.set_clock(open_ms + tick_ms)
            # A window that ends now is decided now, in the writer's order before the next
            # clock move, not whenever the engine's watcher next wakes (on a busy machine
            # that was after a later tick, and the decision's time changed run to run).
            eng.windows.flush_due(open_ms + tick_ms)
            while i < n and pop.requests[i].offset_ms < tick_ms + TICK_MS:
                r = pop.requests[i]
                key = f"k-{r.account}-{r.n}"
                try:
                    slots.append((i, eng.redeem_submit(_order(s, pop, i), CHANNEL, key, key)))
                except LijianError as exc:  # a 503 beyond the window's limit is an answer too
                    slots.append((i, Outcome(error_status(exc), {"code": exc.code})))
                i += 1
        await eng.set_clock(open_ms + SPAN_S * 1000)
        got: dict[int, int] = {}  # account → fen
        grants = 0
        for idx, slot in slots:
            out = slot if isinstance(slot, Outcome) else await slot
            if out.status == 201:
                acc = pop.requests[idx].account
                got[acc] = got.get(acc, 0) + int(out.body["discount_fen"])
                grants += 1
        today = eng.status(s.campaign.id)["today"]
    finally:
        await eng.aclose()
    return _figures(v, pop, got, grants, today, open_ms, len(slots))


def _figures(
    v: Variant,
    pop: RushPopulation,
    got: dict[int, int],
    grants: int,
    today: Json,
    open_ms: int,
    requests: int,
) -> VariantResult:
    by_owner: dict[str, int] = {}
    people = people_served = 0
    bots_fen = 0
    served_accounts: dict[str, int] = {}
    for j, a in enumerate(pop.accounts):
        fen = got.get(j, 0)
        by_owner[a.owner] = by_owner.get(a.owner, 0) + fen
        if a.is_bot:
            bots_fen += fen
            served_accounts[a.owner] = served_accounts.get(a.owner, 0) + (1 if fen else 0)
        else:
            people += 1
            people_served += 1 if fen else 0
    granted = sum(got.values())
    sold_out = today.get("sold_out_at")
    after_s = None
    if isinstance(sold_out, str) and sold_out:
        after_s = (dt.datetime.fromisoformat(sold_out).timestamp() * 1000 - open_ms) / 1000
    owners = [o for o in served_accounts]
    per_owner = sum(served_accounts.values()) / len(owners) if owners else 0.0
    return VariantResult(
        v.name,
        v.window_s,
        v.link,
        granted,
        bots_fen,
        bots_fen / granted if granted else 0.0,
        people_served,
        people,
        per_owner,
        gini(list(by_owner.values())),
        after_s,
        requests,
        grants,
    )


def as_dicts(results: list[VariantResult]) -> list[Json]:
    return [asdict(r) for r in results]


class RushMeta(TypedDict):
    """What a fairness comparison ran (``fairness.json`` beside its variants)."""

    campaign_id: str
    day: str
    tranche_fen: int
    people: int
    bot_share: float
    bot_accounts: int
    bot_owners: int
    requests: int
    span_s: int
    seed: int


def as_configured(base: Settings) -> Variant:
    window_s, link = base.release.admission_window_s, bool(base.identity.link_by)
    name = f"{window_s} s window" if window_s else "first come, first served"
    return Variant(name + (" + linking" if link else "") + " (as configured)", window_s, link, True)


def run_comparison(
    base: Settings,
    people: int,
    bot_share: float,
    seed: int,
    out_dir: Path,
    compare: bool = True,
) -> tuple[list[VariantResult], RushMeta]:
    """The rush with bots under every variant (``compare``) or as the campaign is set."""
    pop = build_rush(people, bot_share, seed)
    variants = list(VARIANTS) if compare else [as_configured(base)]
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [
        asyncio.run(run_variant(base, pop, v, out_dir / f"fairness-{k}.db", seed))
        for k, v in enumerate(variants)
    ]
    first = Schedule(base).windows[0]
    bots = [a for a in pop.accounts if a.is_bot]
    meta: RushMeta = {
        "campaign_id": base.campaign.id,
        "day": first.date.isoformat(),
        "tranche_fen": first.base_fen,
        "people": people,
        "bot_share": bot_share,
        "bot_accounts": len(bots),
        "bot_owners": len(pop.owners),
        "requests": len(pop.requests),
        "span_s": SPAN_S,
        "seed": seed,
    }
    return results, meta
