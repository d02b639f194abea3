"""Each PostgreSQL test gets its own schema, so tests run in parallel (pytest-xdist).

The schema is selected through libpq's ``options`` in the URL (``search_path``), which is
exactly what a deployment would do for a tenant; it is dropped after the test.
``LIJIAN_TEST_PG`` overrides the server (default: the CI server on 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.postgres.pgutil import BASE_URL, drop_schema, new_schema, reachable


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {BASE_URL} (CI must start it)")
        pytest.skip(f"PostgreSQL is not reachable at {BASE_URL}")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = new_schema(name)
    try:
        yield url
    finally:
        drop_schema(name)
