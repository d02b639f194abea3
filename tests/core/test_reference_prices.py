"""Reference prices: the ``[risk]`` settings, the exact comparison in the core rules, the
catalogue's prices (only changes are kept), and a ``[risk]``-less campaign unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lijian.catalog import Catalog
from lijian.core.rules import above_reference
from lijian.core.settings import RiskSection, SettingsError, parse_settings
from lijian.core.status import PriceAction
from tests.support import CAMPAIGN_FILE, Desk, order, seed_doc, settings


def risk(**values: Any) -> dict[str, Any]:
    doc = seed_doc()
    doc["risk"] = values
    return doc


def test_no_risk_section_is_the_default_and_compares_nothing() -> None:
    s = parse_settings(seed_doc())
    assert s.risk == RiskSection(None, PriceAction.FLAG)


def test_risk_section_parsed() -> None:
    s = parse_settings(risk(max_price_over_reference_pct=15, price_action="decline"))
    assert s.risk == RiskSection(15, PriceAction.DECLINE)
    assert parse_settings(risk()).risk == RiskSection(None, PriceAction.FLAG)


def test_every_risk_problem_is_listed() -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(risk(max_price_over_reference_pct=1001, price_action="block", extra=1))
    assert [str(p) for p in err.value.problems] == [
        "risk.max_price_over_reference_pct: must be 0..1000",
        "risk.price_action: must be one of flag, decline; got 'block'",
        "risk.extra: unknown key",
    ]
    for bad, message in (
        (-1, "must be 0..1000"),
        (12.5, "must be an integer, got float"),
        (True, "must be an integer, got bool"),
        ("10", "must be an integer, got str"),
    ):
        with pytest.raises(SettingsError) as err:
            parse_settings(risk(max_price_over_reference_pct=bad))
        assert [str(p) for p in err.value.problems] == [
            f"risk.max_price_over_reference_pct: {message}"
        ]


def test_above_reference_is_exact_at_the_boundary() -> None:
    c = Catalog()
    c.upsert([("jd", "A", "fresh_food"), ("jd", "B", "fresh_food")])
    c.set_reference_prices([("jd", "A", 10_000)])
    # 10% over 10,000 is 11,000: equal is not above, one fen more is.
    assert above_reference(order(sku="A", price_fen=11_000), 10, c) == []
    assert above_reference(order(sku="A", price_fen=11_001), 10, c) == [("A", 11_001, 10_000)]
    # An odd reference: 333 × 1.1 = 366.3, so 366 passes and 367 does not.
    c.set_reference_prices([("jd", "A", 333)])
    assert above_reference(order(sku="A", price_fen=366), 10, c) == []
    assert above_reference(order(sku="A", price_fen=367), 10, c) == [("A", 367, 333)]
    # 0% means not above the reference at all; no reference price: never above.
    assert above_reference(order(sku="A", price_fen=334), 0, c) == [("A", 334, 333)]
    assert above_reference(order(sku="B", price_fen=10**9), 0, c) == []
    assert above_reference(order(sku="A", platform="vip", price_fen=10**9), 0, c) == []


def test_changed_prices_keeps_only_changes_last_wins() -> None:
    c = Catalog()
    c.set_reference_prices([("jd", "A", 100), ("jd", "B", 200)])
    rows = [("jd", "A", 100), ("jd", "B", 250), ("jd", "C", 5), ("jd", "C", 7), ("vip", "A", 100)]
    assert c.changed_prices(rows) == [("jd", "B", 250), ("jd", "C", 7), ("vip", "A", 100)]
    c.set_reference_prices(c.changed_prices(rows))
    assert [c.reference_price_fen("jd", s) for s in "ABC"] == [100, 250, 7]
    assert c.changed_prices(rows) == []


def _desk(**risk_values: Any) -> Desk:
    d = Desk(settings(risk=risk_values) if risk_values else settings(), start="2025-02-12 10:00")
    d.catalog.set_reference_prices([("jd", "JD-1", 10_000)])
    return d


def test_decline_names_price_above_reference() -> None:
    d = _desk(max_price_over_reference_pct=20, price_action="decline")
    assert d.codes(order(1, person="p-1", price_fen=12_001)) == ["price_above_reference"]
    d.granted(order(2, person="p-2", price_fen=12_000))
    # Every reason that applies is listed, the price's among them.
    codes = d.codes(order(3, person="p-3", price_fen=12_001, payment_channel="paypal"))
    assert codes == ["payment_channel_not_supported", "price_above_reference"]


def test_flag_grants_and_names_the_skus() -> None:
    d = _desk(max_price_over_reference_pct=20, price_action="flag")
    ev = d.evaluate(order(1, price_fen=12_001))
    assert (ev.reasons, ev.over_reference) == ([], [("JD-1", 12_001, 10_000)])
    assert d.evaluate(order(2, price_fen=12_000)).over_reference == []
    d.granted(order(1, price_fen=12_001))


def test_without_risk_a_price_far_above_its_reference_is_granted() -> None:
    d = _desk()
    ev = d.evaluate(order(1, price_fen=1_000_000))
    assert (ev.reasons, ev.over_reference) == ([], [])
    d.granted(order(1, price_fen=1_000_000))


def test_campaign_check_lists_every_risk_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        CAMPAIGN_FILE.read_text(encoding="utf-8")
        + '\n[risk]\nmax_price_over_reference_pct = -5\nprice_action = "block"\n',
        encoding="utf-8",
    )
    r = subprocess.run(
        [sys.executable, "-m", "lijian.cli", "campaign", "check", str(bad)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    err = r.stderr.replace("\n", " ")
    assert "risk.max_price_over_reference_pct: must be 0..1000" in err
    assert "risk.price_action: must be one of flag, decline; got 'block'" in err
