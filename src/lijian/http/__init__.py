"""The HTTP adapter: docs/API.md over ``lijian.engine.Engine`` (ASGI, run by uvicorn).

Start here:

- ``app.py``      request pipeline (route, limits, signature, role, rate limit, problems)
- ``api.py``      one handler per endpoint, thin over the engine; roles per route
- ``auth.py``     HMAC signatures and the bounded nonce memory
- ``openapi.py``  the OpenAPI 3.1 document; ``extras.py`` docs page and extension hook
- ``types.py``    Call, Reply, Route and the ASGI types the modules share (imports none)
- ``assembly.py`` the app ``lijian serve`` runs: the pipeline, its endpoints, the extras
- ``server.py``   one serving process under uvicorn (what it serves: ``lijian.serving``;
  ``lijian serve`` itself: ``lijian.cluster.supervisor``)
"""

from __future__ import annotations

from lijian.http.app import Extension, LijianApp
from lijian.http.auth import sign
from lijian.http.clients import Client, load_clients
from lijian.http.server import ServeError, ServeOptions

__all__ = [
    "Client",
    "Extension",
    "LijianApp",
    "ServeError",
    "ServeOptions",
    "load_clients",
    "sign",
]
