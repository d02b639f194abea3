"""The hash chain on PostgreSQL: the same tampering cases as on SQLite
(tests/evidence/chain_cases.py), each on its own schema."""

from __future__ import annotations

import pytest

from tests.evidence.chain_cases import CASES

pytestmark = pytest.mark.xdist_group("postgres")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removeprefix("case_"))
def test_tampering_is_found_on_postgres(pg_url, case):
    case(pg_url)
