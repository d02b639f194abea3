"""The operator dashboard at ``GET /`` of ``lijian serve``.

Operators and auditors log in (``accounts.py``, ``session.py``) and watch the campaign
live: today's tranche, its burn-down by minute, grants per second, declines by reason,
spend by platform and category, totals against the budget, leverage, each day's history,
the settlement table with its CSV, and the audit. The figures come from the committed
ledger entries (``tail.py`` → ``projection.py``) and the engine's own views, pushed to
the browser over Server-Sent Events (``live.py``, ``routes.py``). The page is plain
JavaScript with hand-drawn SVG charts served by lijian itself (``static/``): it works
with no internet. See docs/DASHBOARD.md.

``lijian serve`` mounts it through the HTTP layer's extension hook
(``lijian.http.extras.DEFAULT_EXTENSIONS = ("lijian.dashboard:mount",)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from lijian.dashboard.accounts import Account, accounts_from_clients, parse_users
from lijian.engine import Engine

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from lijian.http.app import LijianApp
    from lijian.http.metrics import Metrics

__all__ = ["Account", "accounts_from_clients", "dashboard_routes", "mount", "parse_users"]


def dashboard_routes(
    engine: Engine, clients_config: Mapping[str, Account], metrics: Metrics | None = None
) -> list[BaseRoute]:
    """The dashboard's routes for ``engine``; ``clients_config`` maps user name → Account
    (``accounts_from_clients(...) | parse_users(doc)``). ``metrics`` (the HTTP layer's
    ``Metrics``) supplies the decline counters; without it the page shows none."""
    from lijian.dashboard.routes import Dashboard

    return Dashboard(engine, clients_config, metrics).routes()


def mount(app: Starlette, lijian: LijianApp) -> None:
    """The HTTP layer's extension hook: add the dashboard to its Starlette app.

    The live projection tails the store the engine writes (``tail.open_tail``): a SQLite
    file or a PostgreSQL database. It is mounted where the ledger is, the one process or
    the sequencer; gateways pass its pages through (``lijian.cluster.proxy``). Every other
    store runs without the dashboard, and says so."""
    import logging

    from lijian.store.postgres import PostgresStore
    from lijian.store.sqlite import SqliteStore

    engine = lijian.engine
    if not isinstance(engine, Engine):
        logging.getLogger("lijian.dashboard").info("dashboard served by the sequencer")
        return
    if not isinstance(engine.store, SqliteStore | PostgresStore):
        store = type(engine.store).__name__
        logging.getLogger("lijian.dashboard").warning("dashboard disabled: no tail for %s", store)
        return
    accounts = accounts_from_clients(lijian.clients.values())
    app.router.routes.extend(dashboard_routes(engine, accounts, lijian.metrics))
