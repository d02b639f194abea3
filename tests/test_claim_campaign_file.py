"""The shipped claimed-voucher campaign file: ``lijian campaign check`` accepts it, and
its vouchers are claimed and paid with on the real engine (ledger on disk, audit)."""

import subprocess
import sys
import tomllib

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.claims import ClaimRequest
from lijian.core.order import Item, Location, Order, Person
from lijian.core.settings import parse_settings
from lijian.engine import Engine
from lijian.geo import load_city
from tests.support import ROOT

FILE = ROOT / "campaigns" / "hangzhou-2020-claims.toml"
WEST_LAKE = (120.1551, 30.2741)  # GCJ-02, Hangzhou


def test_campaign_check_accepts_the_lottery_file():
    lottery = ROOT / "campaigns" / "shenzhen-lottery.toml"
    r = subprocess.run([sys.executable, "-m", "lijian.cli", "campaign", "check", str(lottery)],
                       check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "350,000,000" in r.stdout and r.stdout.count(" 50,000,000 │") == 7
    s = parse_settings(tomllib.loads(lottery.read_text(encoding="utf-8")))
    c = s.claims
    assert (c.allocation, c.lottery_register_s, c.voucher_value_fen) == ("lottery", 7200, 5000)
    assert load_city(s.campaign.city_adcode).device_in_city(114.0579, 22.5431, "gcj02")


def test_campaign_check_accepts_the_claims_file():
    r = subprocess.run([sys.executable, "-m", "lijian.cli", "campaign", "check", str(FILE)],
                       check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "700,000,000" in r.stdout and "exact" in r.stdout
    assert r.stdout.count("100,000,000") == 7


def test_its_vouchers_are_claimed_and_used(tmp_path):
    s = parse_settings(tomllib.loads(FILE.read_text(encoding="utf-8")))
    c = s.claims
    assert (c.on, c.voucher_value_fen, c.valid_for, c.claim_open_min) == (True, 2000, "P7D", 600)
    assert load_city(s.campaign.city_adcode).device_in_city(*WEST_LAKE, "gcj02")
    engine = Engine([s], tmp_path / "hz.db", parse_clock("manual:2020-03-27T10:00:00+08:00"))
    try:
        Blocking(engine).catalog_upsert([("taobao", "TB-1", "fresh_food")])
        where = Location(*WEST_LAKE, "gcj02")
        req = ClaimRequest(Person("hz-1", True), where)
        out = engine.call(engine.claim, s.id, req, "alipay", "ck-1", "0" * 64)
        assert out.status == 201, out.body
        assert out.body["valid_until"] == "2020-04-03T10:00:00+08:00"
        vid = out.body["id"]
        o = Order(s.id, "taobao", "T-1", "alipay", Person("hz-1", True),
                  [Item("TB-1", 1, 12_000)], where, voucher_id=vid)  # fmt: skip
        held = Blocking(engine).redeem(o, "alipay", "k-1", "fp-1")
        assert (held.status, held.body["discount_fen"]) == (201, 2000)
        assert Blocking(engine).capture(held.body["id"]).status == 200
        assert engine.call(engine.read_voucher, vid)["status"] == "used"
        assert Blocking(engine).check() == []
        before = {v.id: v for v in engine.ledger.vouchers.by_id.values()}
    finally:
        engine.close()  # a graceful stop writes a snapshot: the restart decodes it
    again = Engine([s], tmp_path / "hz.db", parse_clock("manual:2020-03-27T10:00:00+08:00"))
    try:
        assert again.snapshot_seq > 0
        assert again.ledger.vouchers.by_id == before
        assert again.call(again.read_voucher, vid)["status"] == "used"
        assert Blocking(again).check() == []
    finally:
        again.close()
    report = audit_db(tmp_path / "hz.db")  # replay from zero, snapshot equal to it
    assert report.ok, report.violations
