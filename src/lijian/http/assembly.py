"""The app ``lijian serve`` runs: the request pipeline (``app.py``) with the contract's
endpoints (``api.py``) and, behind them, the docs page and the extensions (``extras.py``).

Built here, outside all three, so that none of them imports another to be complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from lijian.http.api import Api
from lijian.http.app import Extension, LijianApp
from lijian.http.claims import ClaimsApi
from lijian.http.clients import Client
from lijian.http.extras import build_fallback
from lijian.http.operations import OperationsApi
from lijian.http.types import ASGIApp
from lijian.port import EnginePort


def assemble_app(
    engine: EnginePort,
    clients: dict[str, Client],
    *,
    access_log: bool = True,
    extensions: Sequence[Extension] = (),
    clock_s: Callable[[], float] = time.time,
    fallback: ASGIApp | None = None,
) -> LijianApp:
    """The API over ``engine``; ``fallback`` (a gateway's pass-through to the sequencer)
    replaces the docs and extensions app when given."""

    def behind(app: LijianApp) -> ASGIApp:
        return fallback if fallback is not None else build_fallback(app, extensions)

    return LijianApp(
        engine,
        clients,
        routes=lambda app: (
            Api(app).routes() + OperationsApi(app).routes() + ClaimsApi(app).routes()
        ),
        fallback=behind,
        access_log=access_log,
        clock_s=clock_s,
    )
