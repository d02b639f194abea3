"""Fixtures: every test here runs once per topology (``harness.TOPOLOGIES``): one
process, ``--workers 2`` on SQLite and on PostgreSQL, and two gateways with their own
ports in front of one sequencer. The answers must be the same on each.

One shared server per topology and test worker (manual clock at 2025-02-12 10:00, the
tranche open, a small catalogue loaded over HTTP). Tests on it use fresh order and person
ids, so they do not depend on each other; tests that move the clock or need another
campaign start their own server (``Server(...)`` takes the topology of the test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http import harness
from tests.http.harness import TOPOLOGIES, Api, Server


@pytest.fixture(scope="session", params=TOPOLOGIES, autouse=True)
def topology(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    before = harness.DEFAULT_TOPOLOGY["name"]
    harness.DEFAULT_TOPOLOGY["name"] = name
    try:
        yield name
    finally:
        harness.DEFAULT_TOPOLOGY["name"] = before


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp(f"http-{topology}")), topology=topology)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def api(server: Server) -> Api:
    return server.api
