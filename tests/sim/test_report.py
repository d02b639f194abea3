"""The HTML report is one self-contained file: images inlined, nothing fetched."""

from __future__ import annotations

import re

from lijian.core.categories import CATEGORIES_DEFAULT
from lijian.sim.metrics import clock_after
from lijian.sim.report import CATEGORY_NAMES, write_report
from tests.sim.conftest import Done
from tests.support import ROOT


def test_the_html_report_is_self_contained(small_run: Done, tmp_path) -> None:
    paths = write_report(small_run.run, small_run.summary, tmp_path)
    html = paths["html"].read_text("utf-8")
    assert not re.search(r"https?://", html), "no reference to anything outside the file"
    assert "<script" not in html and "<link" not in html
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 4
    assert all(src.startswith("data:image/png;base64,") for src in images)
    for name in ("burndown", "declines", "spend", "daily"):
        assert paths[name].read_bytes().startswith(b"\x89PNG")
    assert paths["summary"].exists()
    for d in small_run.summary["days"]:
        assert d["date"] in html


def test_the_report_shows_clock_times_and_category_names(small_run: Done, tmp_path) -> None:
    """Both sell-out columns are clock times (HH:MM:SS of the day, not durations), and
    the spend table names each category as the dashboard does."""
    html = write_report(small_run.run, small_run.summary, tmp_path)["html"].read_text("utf-8")
    assert '<th class="">sold out at</th><th class="">forecast: sold out at</th>' in html
    for d in small_run.summary["days"]:
        if d["forecast_sold_out_after_s"] is not None:
            assert clock_after(d["forecast_sold_out_after_s"], 10 * 3600) in html
    spend = html[html.index("<h2>Spend</h2>") :]
    assert "家居家纺 Home textiles" in spend and "home_textiles" not in spend


def test_the_category_names_are_the_dashboards() -> None:
    js = (ROOT / "src" / "lijian" / "dashboard" / "static" / "i18n.js").read_text("utf-8")
    for slug, (zh, en) in CATEGORY_NAMES.items():
        assert f'"cat_{slug}": "{zh}"' in js and f'"cat_{slug}": "{en}"' in js, slug
    assert set(CATEGORY_NAMES) == set(CATEGORIES_DEFAULT)
