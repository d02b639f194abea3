"""The hash chain on a real SQLite file: every way of rewriting history is named by seq."""

from __future__ import annotations

import pytest

from tests.evidence.chain_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removeprefix("case_"))
def test_tampering_is_found_on_sqlite(tmp_path, case):
    case(str(tmp_path / "lijian.db"))
