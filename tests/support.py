"""Test helpers: the seed campaign, orders, and an in-memory desk over the pure core.

The desk wires the real rules, the real catalogue and the real Chengdu geofence to a
``Ledger`` with no store: what the engine does, minus the disk, in microseconds.
"""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lijian.catalog import Catalog
from lijian.core.ledger import HoldOutcome, Ledger
from lijian.core.order import Address, Item, Location, Order, Person, RefundRequest
from lijian.core.rules import Evaluation, evaluate_order
from lijian.core.schedule import to_ms
from lijian.core.settings import Settings, parse_settings
from lijian.geo import load_city

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN_FILE = ROOT / "campaigns" / "chengdu-2025-spring.toml"
CID = "chengdu-2025-spring"
TZ = ZoneInfo("Asia/Shanghai")
TIANFU_SQUARE = (104.0657, 30.6574)  # GCJ-02
CHONGQING = (106.5770, 29.5570)


def seed_doc() -> dict[str, Any]:
    with open(CAMPAIGN_FILE, "rb") as f:
        return tomllib.load(f)


def settings(**sections: dict[str, Any]) -> Settings:
    """The seed settings with some keys replaced: settings(limits={"hold_ttl_s": 60})."""
    doc = copy.deepcopy(seed_doc())
    for section, values in sections.items():
        doc.setdefault(section, {}).update(values)
    return parse_settings(doc)


def at(text: str) -> int:
    """Epoch ms of a local Chengdu time: at("2025-02-12 10:00")."""
    return to_ms(dt.datetime.fromisoformat(text).replace(tzinfo=TZ))


def order(
    n: int | str = 1,
    person: str = "p-1",
    price_fen: int = 12_900,
    quantity: int = 2,
    platform_discount_fen: int = 1_000,
    sku: str = "JD-1",
    platform: str = "jd",
    campaign_id: str = CID,
    **kw: Any,
) -> Order:
    fields: dict[str, Any] = dict(
        campaign_id=campaign_id,
        platform=platform,
        order_id=f"O-{n}",
        payment_channel="unionpay",
        person=Person(person, True),
        items=[Item(sku, quantity, price_fen, platform_discount_fen)],
        device_location=Location(*TIANFU_SQUARE, "gcj02"),
        delivery_address=Address("510104"),
    )
    fields.update(kw)
    return Order(**fields)


def catalog() -> Catalog:
    c = Catalog()
    cats = seed_doc()["eligibility"]["categories"]
    c.upsert((p, f"{p.upper()}-{i}", cats[i % len(cats)]) for p in ("jd", "vip") for i in range(50))
    c.upsert([("jd", "JD-TOY-GUN", "weapons")])  # a SKU outside the nine categories
    return c


class Desk:
    """The pure core with real rules and geography, for tests that need no disk."""

    def __init__(self, *s: Settings, start: str = "2025-02-12 09:59") -> None:
        self.settings = list(s) or [settings()]
        self.ledger = Ledger(self.settings)
        self.catalog = catalog()
        self.now_ms = at(start)
        self.ledger.advance(self.now_ms)
        self.keys = 0

    def move(self, text: str | None = None, seconds: int = 0) -> None:
        self.now_ms = at(text) if text else self.now_ms + seconds * 1000
        self.ledger.advance(self.now_ms)

    def evaluate(self, o: Order) -> Evaluation:
        """The engine's own stateless rules (Engine.evaluate), with the real fence."""
        s = self.ledger.book(o.campaign_id).settings
        return evaluate_order(o, s, self.catalog, load_city(s.campaign.city_adcode))

    def redeem(self, o: Order, key: str | None = None, client: str = "unionpay") -> HoldOutcome:
        self.keys += 1
        return self.ledger.hold(
            o, self.evaluate(o), self.now_ms, client, key or f"k-{self.keys}", f"fp-{o.order_id}"
        )

    def granted(self, o: Order) -> str:
        out = self.redeem(o)
        assert out.redemption is not None, out.reasons
        return out.redemption.id

    def codes(self, o: Order) -> list[str]:
        out = self.redeem(o)
        assert out.redemption is None
        return [c for c, _ in out.reasons]

    def capture(self, rid: str) -> Any:
        return self.ledger.capture(rid, self.now_ms)

    def void(self, rid: str) -> Any:
        return self.ledger.void(rid, self.now_ms)

    def refund(self, rid: str, refund_id: str, key: str | None = None, **kw: Any) -> Any:
        self.keys += 1
        req = RefundRequest(refund_id, **kw)
        f, _ = self.ledger.refund(
            rid, req, self.now_ms, "unionpay", key or f"rk-{self.keys}", f"rfp-{refund_id}"
        )
        return f

    def tranche(self, day: str, cid: str = CID) -> Any:
        return self.ledger.book(cid).tranches[day]

    def person(self, pid: str = "p-1", cid: str = CID) -> Any:
        return self.ledger.person(cid, pid)
