"""The HTML report is one self-contained file: images inlined, nothing fetched."""

from __future__ import annotations

import re

from lijian.sim.report import write_report
from tests.sim.conftest import Done


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
