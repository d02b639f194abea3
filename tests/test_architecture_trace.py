"""docs/ARCHITECTURE.md traces one redemption through the code: every ``file: Name`` it
cites must be in that file, and the trace must stay short (eight files on one process,
ten through a gateway), or the doc no longer shows the way the code runs."""

from __future__ import annotations

import re

from tests.support import ROOT

DOC = ROOT / "docs" / "ARCHITECTURE.md"
SRC = ROOT / "src" / "lijian"
# `path.py: Name` or `path.py: Class.method` (a name in the trace's own steps).
_CITED = re.compile(r"`([\w/]+\.py): ([\w.]+)`")
_STEP = re.compile(r"^\d+\. `([\w/]+\.py): ", re.M)


def _section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    return text[start : text.index("\n## ", start + 1)]


def _defines(path: str, dotted: str) -> bool:
    source = (SRC / path).read_text(encoding="utf-8")
    names = dotted.split(".")
    if not re.search(rf"^(class|def|async def) {names[0]}\b", source, re.M):
        return False
    return all(re.search(rf"^\s+(async )?def {n}\b|^\s+{n}\b", source, re.M) for n in names[1:])


def test_every_name_the_redemption_traces_cite_is_in_its_file() -> None:
    cited = set()
    for heading in ("## One redemption, end to end", "## The same redemption across"):
        cited |= set(_CITED.findall(_section(heading)))
    assert len(cited) >= 15, cited  # the traces were found and read
    missing = sorted(f"{p}: {n}" for p, n in cited if not _defines(p, n))
    assert missing == []


def test_one_redemption_is_traced_in_eight_files_and_ten_through_a_gateway() -> None:
    one = _STEP.findall(_section("## One redemption, end to end"))
    assert len(one) == len(set(one)) == 8, one
    via = _STEP.findall(_section("## The same redemption across"))
    # The gateway's own steps, plus the sequencer's steps of the one-process trace that
    # it runs unchanged (all but the HTTP pipeline and the endpoint).
    files = set(via) | (set(one) - {"http/app.py", "http/api.py"})
    assert len(files) == 10, sorted(files)
