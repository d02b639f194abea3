"""Real ledgers with vouchers, a lottery, trade-in items and risk flags, built by the
engine (manual clock, SQLite) from the shipped campaign files, for the bundle's rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.claims import ClaimRequest
from lijian.core.order import Address, Item, Location, Order, Person, RefundRequest
from lijian.core.schedule import to_ms
from lijian.engine import Engine
from lijian.inputs import load_settings_file
from tests.support import ROOT, TIANFU_SQUARE, TZ, catalog, order, settings

HANGZHOU = ROOT / "campaigns" / "hangzhou-2020-claims.toml"
SHENZHEN = ROOT / "campaigns" / "shenzhen-lottery.toml"
SICHUAN = ROOT / "campaigns" / "sichuan-2025-tradein.toml"
WEST_LAKE = Location(120.1551, 30.2741, "gcj02")
FUTIAN = Location(114.0579, 22.5431, "gcj02")
TIANFU = Location(*TIANFU_SQUARE, "gcj02")


def at(text: str) -> int:
    return to_ms(dt.datetime.fromisoformat(text).replace(tzinfo=TZ))


def engine(s: Any, db: Path, start: str) -> Engine:
    return Engine([s], db, parse_clock(f"manual:{start}+08:00"))


def claim(e: Engine, cid: str, person: str, where: Location, category: str | None = None) -> Any:
    req = ClaimRequest(Person(person, True), where, category)
    return e.call(e.claim, cid, req, "unionpay", f"ck-{cid}-{person}-{category}", "0" * 64)


def pay(e: Engine, o: Order, n: int, capture: bool = True) -> str:
    """The order paid with its voucher: held, then captured (or voided); its id."""
    held = Blocking(e).redeem(o, o.payment_channel, f"k-{n}", f"fp-{n}")
    assert held.status == 201, held.body
    done = Blocking(e).capture(held.body["id"]) if capture else Blocking(e).void(held.body["id"])
    assert done.status == 200, done.body
    return str(held.body["id"])


def hangzhou(db: Path) -> dict[str, str]:
    """Day 1 (2020-03-27): three claims; hz-1 pays with its voucher (held, captured:
    used), hz-2 holds with it and voids (held, given back). Day 2: hz-3 pays with the
    voucher it claimed on day 1; hz-1's order is refunded in full (its voucher restored).
    Closes days 1 and 2."""
    s = load_settings_file(HANGZHOU)
    e = engine(s, db, "2020-03-27T09:00:00")
    try:
        Blocking(e).catalog_upsert([("taobao", "TB-1", "fresh_food")])
        Blocking(e).set_clock(at("2020-03-27 10:00"))
        ids = {}
        for p in ("hz-1", "hz-2", "hz-3"):
            out = claim(e, s.id, p, WEST_LAKE)
            assert out.status == 201, out.body
            ids[p] = out.body["id"]
        for n, p in enumerate(("hz-1", "hz-2", "hz-3")):
            if p == "hz-3":
                Blocking(e).set_clock(at("2020-03-28 11:00"))
            o = Order(s.id, "taobao", f"T-{n}", "alipay", Person(p, True),
                      [Item("TB-1", 1, 12_000)], WEST_LAKE, voucher_id=ids[p])  # fmt: skip
            ids[f"{p} order"] = pay(e, o, n, capture=p != "hz-2")
        full = RefundRequest("rf-1", payable_fen=12_000)
        out = Blocking(e).refund(ids["hz-1 order"], full, "alipay", "kr-1", "fpr-1")
        assert out.status == 201 and out.body["kind"] == "full", out.body
        Blocking(e).set_clock(at("2020-03-29 09:00"))  # closes 03-27 and 03-28
        assert Blocking(e).check() == []
    finally:
        e.close()
    return ids


def shenzhen(db: Path) -> tuple[str, list[str]]:
    """Day 1 (2022-03-21): five registrations 10:00-12:00, drawn at 12:00 (all win: the
    tranche holds 10,000 vouchers); sz-0 pays with its voucher. Closes day 1."""
    s = load_settings_file(SHENZHEN)
    e = engine(s, db, "2022-03-21T09:00:00")
    try:
        Blocking(e).catalog_upsert([("jd", "JD-1", min(s.eligibility.categories))])
        Blocking(e).set_clock(at("2022-03-21 10:30"))
        regs = []
        for n in range(5):
            out = claim(e, s.id, f"sz-{n}", FUTIAN)
            assert out.status == 202, out.body
            regs.append(out.body["id"])
        Blocking(e).set_clock(at("2022-03-21 12:00"))  # the draw
        o = Order(s.id, "jd", "J-1", "unionpay", Person("sz-0", True),
                  [Item("JD-1", 1, 25_000)], FUTIAN, voucher_id=regs[0])  # fmt: skip
        pay(e, o, 1)
        Blocking(e).set_clock(at("2022-03-22 09:00"))  # closes 03-21
        assert Blocking(e).check() == []
    finally:
        e.close()
    return s.id, regs


def sichuan(db: Path) -> tuple[str, list[str]]:
    """Day 1 (2025-03-01): t-1 claims a phone qualification and buys a phone with it
    (held, items subsidised, captured: used); t-2 claims an air conditioner one and
    buys three with it (three serials), voided; t-3's qualification is never used (it
    expires at the day's close). Closes day 1."""
    s = load_settings_file(SICHUAN)
    e = engine(s, db, "2025-03-01T08:00:00")
    try:
        Blocking(e).catalog_upsert(
            [("jd", "PHONE-1", "phone")] + [("jd", f"AC-{n}", "air_conditioner") for n in range(3)]
        )
        Blocking(e).set_clock(at("2025-03-01 09:00"))
        vids = []
        for p, cat in (("t-1", "phone"), ("t-2", "air_conditioner"), ("t-3", "phone")):
            out = claim(e, s.id, p, TIANFU, cat)
            assert out.status == 201, out.body
            vids.append(out.body["id"])
        buys = (
            ("t-1", [Item("PHONE-1", 1, 300_000, serial="SN-PHONE-0001")]),
            ("t-2", [Item(f"AC-{n}", 1, 400_000, serial=f"SN-AC-000{n}") for n in range(3)]),
        )
        for n, (p, items) in enumerate(buys):  # fmt: skip
            o = Order(s.id, "jd", f"J-{n}", "unionpay", Person(p, True), items, TIANFU,
                      Address("510104"), voucher_id=vids[n])  # fmt: skip
            pay(e, o, n, capture=p == "t-1")
        Blocking(e).set_clock(at("2025-03-02 08:00"))  # closes 03-01
        assert Blocking(e).check() == []
    finally:
        e.close()
    return s.id, vids


RISK = {"cluster_persons_max": 1, "velocity_redemptions_max": 1, "velocity_window_min": 10}


def risky(db: Path) -> str:
    """Day 1 (2025-02-12), a campaign with [risk]: r-1 and r-2 on one device (a cluster
    flag), r-1 twice in a minute (a velocity flag); the first flag dismissed. Closes it."""
    s = settings(risk=RISK)
    e = engine(s, db, "2025-02-12T10:00:00")
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        for n, p in enumerate(("r-1", "r-2", "r-1")):
            o = order(n, person=p)
            o = Order(o.campaign_id, o.platform, o.order_id, o.payment_channel,
                      Person(p, True, device_id="dev-A"), o.items, o.device_location,
                      o.delivery_address)  # fmt: skip
            assert Blocking(e).redeem(o, "unionpay", f"k-{n}", f"fp-{n}").status == 201
        flags = e.call(e.read_operations, s.id, "review_queue")
        first = flags["flags"][0]["id"]
        body = {"flag_id": first, "action": "dismiss", "reason": "a household"}
        out = e.call(e.operate, "review", s.id, body, "ops")
        assert out.status == 200, out.body
        Blocking(e).set_clock(at("2025-02-13 09:00"))  # closes 02-12
        assert Blocking(e).check() == []
    finally:
        e.close()
    return s.id


def two_cities(db: Path) -> tuple[list[str], dict[str, str]]:
    """Hangzhou and a copy of it ("hangzhou-copy") in one ledger: day 1 (2020-03-27) a
    claim in each, day 2 both vouchers paid with. Closes days 1 and 2."""
    import tomllib

    from lijian.core.settings import parse_settings

    text = HANGZHOU.read_text(encoding="utf-8")
    copy = tomllib.loads(text)
    copy["campaign"]["id"] = "hangzhou-copy"
    both = [parse_settings(tomllib.loads(text)), parse_settings(copy)]
    e = Engine(both, db, parse_clock("manual:2020-03-27T09:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert([("taobao", "TB-1", "fresh_food")])
        Blocking(e).set_clock(at("2020-03-27 10:00"))
        vids = {s.id: claim(e, s.id, "hz-1", WEST_LAKE).body["id"] for s in both}
        Blocking(e).set_clock(at("2020-03-28 11:00"))
        for n, s in enumerate(both):
            o = Order(s.id, "taobao", f"T-{n}", "alipay", Person("hz-1", True),
                      [Item("TB-1", 1, 12_000)], WEST_LAKE, voucher_id=vids[s.id])  # fmt: skip
            pay(e, o, n)
        Blocking(e).set_clock(at("2020-03-29 09:00"))
        assert Blocking(e).check() == []
    finally:
        e.close()
    return [s.id for s in both], vids
