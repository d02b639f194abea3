"""Fixtures: one shared server per test worker (manual clock at 2025-02-12 10:00, the
tranche open, a small catalogue loaded over HTTP). Tests on it use fresh order and
person ids, so they do not depend on each other; tests that move the clock or need
another campaign start their own server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http.harness import Api, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp("http-main")))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def api(server: Server) -> Api:
    return server.api
