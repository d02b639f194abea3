"""Everything outside the contract, on a plain Starlette app behind the API router.

Serves the API reference page (``GET /docs``: Swagger UI from the ``swagger-ui-bundle-v2``
wheel, no CDN) and is where extensions mount their routes. The operator dashboard
(``GET /``, a colleague's work) plugs in like this::

    # src/lijian/dashboard/__init__.py
    def mount(app: Starlette, lijian: LijianApp) -> None:
        app.router.routes.append(Route("/", page, methods=["GET"]))
        # lijian.engine, lijian.metrics … are there to read (on the event loop)

    # and in lijian.http.extras.DEFAULT_EXTENSIONS (used by ``lijian serve``):
    DEFAULT_EXTENSIONS = ("lijian.dashboard:mount",)

Unknown paths answer 404 as problem+json, like the API.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lijian.http.problems import Problem, problem_reply

if TYPE_CHECKING:
    from lijian.http.app import Extension, LijianApp

# "module:function" names of extensions ``lijian serve`` mounts; each takes
# (Starlette app, LijianApp). Missing modules are skipped, so the list can name work
# that is not merged yet.
DEFAULT_EXTENSIONS: tuple[str, ...] = ("lijian.dashboard:mount",)

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lijian API v1</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head><body>
<p style="font-family:sans-serif;margin:1em">Every <code>/v1/</code> request must be signed
(HMAC-SHA256, see <code>docs/API.md</code>); "Try it out" cannot sign, so use it to read.
The machine-readable contract is <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body></html>
"""

# Inline scripts are avoided so the page works under a strict Content-Security-Policy.
DOCS_INIT_JS = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui",
  deepLinking: true, supportedSubmitMethods: []});
"""


def swagger_ui_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if path.is_dir() else None


async def _docs(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


async def _docs_init(request: Request) -> Response:
    return Response(DOCS_INIT_JS, media_type="text/javascript")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    reply = problem_reply(Problem(exc.status_code, code, f"{request.method} {request.url.path}"))
    return Response(reply.body, reply.status, media_type=reply.content_type.decode())


def load_extension(spec: str) -> Extension | None:
    """Import "module:function"; None if the module does not exist (yet)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    fn: Extension | None = getattr(module, attr, None)
    if fn is None:
        from lijian.http.logs import get_logger

        get_logger().warning("extension_missing", extension=spec)
    return fn


def build_fallback(app: LijianApp, extensions: Sequence[Extension]) -> Starlette:
    routes: list[Route | Mount] = [
        Route("/docs", _docs, methods=["GET"]),
        Route("/docs/static/docs-init.js", _docs_init, methods=["GET"]),
    ]
    ui = swagger_ui_dir()
    if ui is not None:
        routes.append(Mount("/docs/static", StaticFiles(directory=ui), name="swagger-ui"))
    fallback = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    for ext in extensions:
        ext(fallback, app)
    return fallback
