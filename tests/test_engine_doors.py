"""The engine refuses at its own door what would stop the ledger from starting again,
whoever calls it (HTTP, the sequencer, a script): catalogue rows past the category limit
(counted over the rows and what is stored, never over a map the caller sends), a NUL in
a row (PostgreSQL cannot store it), a manual clock outside 2000-2099. Real SQLite files
and PostgreSQL schemas; each ledger is started again afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lijian.blocking import Blocking
from lijian.clock import ManualClock, check_manual_ms
from lijian.core.errors import CatalogFull, InvalidRequest
from lijian.engine import Engine
from tests.postgres.pgutil import drop_schema, new_schema, reachable
from tests.support import CID, at, settings

Y2099_MS = 4_102_329_600_000  # 2099-12-31T00:00:00+08:00
Y9999_MS = 253_402_185_600_000  # 9999-12-31T00:00:00+08:00


@pytest.fixture(params=["sqlite", "pg"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "l.db")
        return
    assert reachable(), "PostgreSQL must run at 127.0.0.1:5432 for these tests"
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = new_schema(name)
    try:
        yield url
    finally:
        drop_schema(name)


def engine(db: str) -> Engine:
    return Engine([settings()], db, clock=ManualClock(at("2025-02-12 10:00")))


def rows(n: int, prefix: str) -> list[tuple[str, str, str]]:
    return [("jd", f"{prefix}-{i}", f"{prefix}-cat-{i:03d}") for i in range(n)]


def test_catalogue_categories_are_counted_from_the_rows_over_what_is_stored(db: str) -> None:
    with engine(db) as e:
        # 300 new categories with no map at all, then with a map that names none of them.
        with pytest.raises(CatalogFull) as full:
            Blocking(e).catalog_upsert(rows(300, "a"))
        assert full.value.line == 256 and full.value.category == "a-cat-255"
        with pytest.raises(CatalogFull):
            e.call(e.catalog_upsert, rows(300, "b"), {})
        assert len(e.catalog) == 0
        # 200 fit; 100 more do not (255 in all): refused whole, nothing stored.
        assert Blocking(e).catalog_upsert(rows(200, "c")) == 200
        with pytest.raises(CatalogFull) as full:
            Blocking(e).catalog_upsert(rows(100, "d"))
        assert full.value.line == 56
        assert Blocking(e).catalog_upsert(rows(55, "e")) == 55  # exactly to the limit
        with pytest.raises(InvalidRequest, match="NUL"):
            Blocking(e).catalog_upsert([("jd", "SKU\x00", "c-cat-000")])
        with pytest.raises(InvalidRequest, match="NUL"):
            Blocking(e).catalog_upsert([("jd", "SKU-1", "c-cat-000\x00")])
        assert len(e.catalog) == 255
    with engine(db) as e:  # the ledger starts again, with what was stored
        assert len(e.catalog) == 255
        assert e.catalog.category_of("jd", "e-54") == "e-cat-054"
        assert e.catalog.category_of("jd", "d-0") is None


def test_two_uploads_in_flight_cannot_pass_the_limit_together(db: str) -> None:
    with engine(db) as e:

        async def both() -> list[object]:
            import asyncio

            a = e.catalog_upsert(rows(200, "x"))
            b = e.catalog_upsert(rows(100, "y"))
            return list(await asyncio.gather(a, b, return_exceptions=True))

        first, second = e.call(both)
        assert first == 200 and isinstance(second, CatalogFull)
    with engine(db) as e:
        assert len(e.catalog) == 200


def test_a_manual_clock_stays_within_2000_to_2099(db: str) -> None:
    with engine(db) as e:
        for target in (Y9999_MS, 2**62):
            with pytest.raises(InvalidRequest, match="2000-01-01 to 2099-12-31"):
                Blocking(e).set_clock(target)
        with pytest.raises(InvalidRequest, match="2000-01-01 to 2099-12-31"):
            Blocking(e).set_clock(advance_ms=Y9999_MS)
        assert Blocking(e).set_clock(Y2099_MS) == Y2099_MS
        assert Blocking(e).status(CID)["now"] == "2099-12-31T00:00:00+08:00"
    with engine(db) as e:
        assert Blocking(e).status(CID)["campaign_id"] == CID
    with pytest.raises(ValueError, match="2000-01-01"):
        check_manual_ms(Y9999_MS)
