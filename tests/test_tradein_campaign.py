"""The shipped trade-in campaign file passes ``lijian campaign check`` and says what the
Sichuan-2025 rules say; a file with bad trade-in keys gets every problem, by field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lijian.inputs import load_settings_file
from tests.support import ROOT

FILE = ROOT / "campaigns" / "sichuan-2025-tradein.toml"
LIJIAN = [sys.executable, "-m", "lijian.cli"]
DIGITAL = ("phone", "tablet", "smartwatch")


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIJIAN, "campaign", "check", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_the_shipped_trade_in_campaign_passes_campaign_check() -> None:
    r = check(FILE)
    assert r.returncode == 0, r.stderr
    assert "sichuan-2025-tradein" in r.stdout and "exact" in r.stdout


def test_the_trade_in_file_says_the_sichuan_rules() -> None:
    s = load_settings_file(FILE)
    rules, cats = s.items, s.eligibility.categories
    assert rules.per_item and rules.counted and rules.require_serial
    for c in DIGITAL:  # 15%, 500.00 CNY a unit, priced up to 6,000.00 CNY
        assert (rules.rate_bp(c, s.discount.rate_bp), rules.unit_cap_fen(c)) == (1500, 50_000)
        assert rules.unit_ceiling_fen(c) == 600_000
    appliances = cats - set(DIGITAL)
    assert "air_conditioner" in appliances and "refrigerator" in appliances
    for c in appliances:  # 20%, 2,000.00 CNY a unit, no ceiling
        assert (rules.rate_bp(c, s.discount.rate_bp), rules.unit_cap_fen(c)) == (2000, 200_000)
        assert rules.unit_ceiling_fen(c) == 0
    assert {c: rules.units_allowed(c) for c in cats} == {
        c: 3 if c == "air_conditioner" else 1 for c in cats
    }
    # Qualifications: claimed first, for one category, 08:30-22:00, valid on their day.
    c = s.claims
    assert (c.on, c.per_category, c.valid_for, c.allocation) == (True, True, "day", "first_come")
    assert (c.claim_open_min, c.claim_close_min) == (8 * 60 + 30, 22 * 60)
    assert c.voucher_value_fen == max(rules.unit_cap_fen(x) for x in cats) == 200_000


def test_campaign_check_lists_every_trade_in_problem_with_its_field(tmp_path: Path) -> None:
    text = FILE.read_text(encoding="utf-8")
    bad = (
        text.replace("require_serial = true", 'require_serial = "yes"')
        .replace("max_discount_fen_per_item = 200_000", "max_discount_fen_per_item = -5")
        .replace("refrigerator = 2000", "refrigerator = 20000\ntoaster = 1000")
    )
    f = tmp_path / "bad.toml"
    f.write_text(bad, encoding="utf-8")
    r = check(f)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.startswith("  ")]
    assert lines == [
        "discount.category_rate_bp.refrigerator: must be 1..10000",
        "discount.category_rate_bp.toaster: is not one of eligibility.categories",
        "discount.max_discount_fen_per_item: must be 0..100000000000",
        "limits.require_serial: must be a bool, got str",
    ]
