"""lijian's one-process app for an ASGI server other than ``lijian serve``'s uvicorn
(``bench/server_bench.py``): ``granian --interface asgi --factory bench.server_app:app``.

The inputs come from ``LIJIAN_BENCH_SERVE`` (JSON: campaigns, clients, db, clock), the
app is built by the same composition root as ``lijian serve`` (``serving.build_app``);
its lifespan starts and drains the engine, as under uvicorn.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lijian.http.app import LijianApp
from lijian.http.extras import DEFAULT_EXTENSIONS
from lijian.http.logs import configure
from lijian.http.server import ServeOptions
from lijian.serving import build_app

ENV = "LIJIAN_BENCH_SERVE"


def app() -> LijianApp:
    spec = json.loads(os.environ[ENV])
    configure("warning")
    opts = ServeOptions(
        [Path(p) for p in spec["campaigns"]], Path(spec["clients"]), spec["db"],
        clock=spec["clock"], access_log=False, extensions=DEFAULT_EXTENSIONS,
    )  # fmt: skip
    return build_app(opts)
