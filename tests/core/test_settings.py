"""Campaign settings: the seed file loads exactly, a bad file lists every problem."""

import datetime as dt

import pytest

from lijian.core.schedule import Schedule, split_budget_fen
from lijian.core.settings import SettingsError, parse_settings
from tests.support import seed_doc, settings


def test_the_seed_file_loads_with_the_notice_numbers():
    s = settings()
    assert s.campaign.budget_fen == 3_000_000_000
    assert s.campaign.start_date == dt.date(2025, 2, 12)
    assert s.campaign.end_date == dt.date(2025, 2, 28)
    assert s.campaign.daily_open_min == 600 and s.campaign.daily_close_min == 1440
    assert s.discount.rate_bp == 1500
    assert s.limits.person_savings_cap_fen == 150_000
    assert s.limits.hold_ttl_s == 900
    assert len(s.eligibility.categories) == 9
    assert s.refunds.clawback_returns_to == "next_tranche"


def test_equal_split_is_sixteen_days_of_176470588_and_a_last_day_of_176470592():
    sched = Schedule(settings())
    amounts = [w.base_fen for w in sched.windows]
    assert amounts == [176_470_588] * 16 + [176_470_592]
    assert sum(amounts) == 3_000_000_000


def test_tranches_open_at_ten_and_close_at_midnight_chengdu_time():
    sched = Schedule(settings())
    first = sched.windows[0]
    opens = dt.datetime.fromtimestamp(first.opens_at_ms / 1000, dt.UTC)
    closes = dt.datetime.fromtimestamp(first.closes_at_ms / 1000, dt.UTC)
    assert opens == dt.datetime(2025, 2, 12, 2, 0, tzinfo=dt.UTC)  # 10:00 UTC+8
    assert closes == dt.datetime(2025, 2, 12, 16, 0, tzinfo=dt.UTC)  # 24:00 UTC+8


@pytest.mark.parametrize("budget,days", [(1, 1), (10, 3), (3_000_000_000, 17), (99, 100)])
def test_split_always_sums_to_the_budget(budget, days):
    parts = split_budget_fen(budget, days)
    assert sum(parts) == budget and len(parts) == days
    assert max(parts) - min(parts) < days


def test_explicit_tranches_must_sum_to_the_budget():
    doc = seed_doc()
    doc["campaign"]["budget_fen"] = 300
    doc["campaign"]["start_date"] = "2025-02-12"
    doc["campaign"]["end_date"] = "2025-02-13"
    doc["campaign"]["tranches"] = {"2025-02-12": 100, "2025-02-13": 100}
    with pytest.raises(SettingsError) as e:
        parse_settings(doc)
    assert [p.path for p in e.value.problems] == ["campaign.tranches"]
    doc["campaign"]["tranches"] = {"2025-02-12": 100, "2025-02-13": 200}
    s = parse_settings(doc)
    assert [w.base_fen for w in Schedule(s).windows] == [100, 200]


def test_a_bad_file_lists_every_problem_with_its_path():
    doc = seed_doc()
    doc["campaign"]["budget_fen"] = -5
    doc["campaign"]["end_date"] = "2025-02-01"
    doc["campaign"]["daily_open"] = "25:00"
    doc["campaign"]["leftover"] = "keep"
    doc["campaign"]["timezone"] = "Mars/Olympus"
    doc["discount"]["rate_bp"] = 1.5
    doc["limits"]["hold_ttl_s"] = 0
    doc["limits"]["surprise"] = 1
    doc["refunds"]["clawback_returns_to"] = "nowhere"
    doc["eligibility"]["require_real_name"] = "yes"
    doc["extra"] = {}
    with pytest.raises(SettingsError) as e:
        parse_settings(doc)
    paths = {p.path for p in e.value.problems}
    assert paths == {
        "campaign.budget_fen",
        "campaign.end_date",
        "campaign.daily_open",
        "campaign.leftover",
        "campaign.timezone",
        "discount.rate_bp",
        "limits.hold_ttl_s",
        "limits.surprise",
        "refunds.clawback_returns_to",
        "eligibility.require_real_name",
        "extra",
    }


def test_money_must_be_an_integer_not_a_float_or_a_bool():
    for bad in (3e9, True, "3000000000"):
        doc = seed_doc()
        doc["campaign"]["budget_fen"] = bad
        with pytest.raises(SettingsError) as e:
            parse_settings(doc)
        assert e.value.problems[0].path == "campaign.budget_fen"


def test_threshold_discounts_need_tiers():
    doc = seed_doc()
    doc["discount"] = {"kind": "threshold"}
    with pytest.raises(SettingsError) as e:
        parse_settings(doc)
    assert "discount.tiers" in {p.path for p in e.value.problems}
    doc["discount"]["tiers"] = [{"min_payable_fen": 20_000, "off_fen": 3_000}]
    assert parse_settings(doc).discount.tiers[0].off_fen == 3_000


def test_missing_sections_are_reported():
    with pytest.raises(SettingsError) as e:
        parse_settings({})
    assert {"campaign", "discount", "limits"} <= {p.path for p in e.value.problems}
