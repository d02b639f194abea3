"""What is not the contract is answered alike on every topology (cluster/proxy.py).

A gateway passes only the dashboard's pages through to the sequencer, by an explicit
list; everything else it answers with the app one process has behind the API. So
``GET *``, unknown paths, dot segments (also in a signed request) and wrong methods get
exactly one process's answer on every topology, never a 500, and a path the gateway
does not list never reaches the sequencer's HTTP port.
"""

from __future__ import annotations

import json
import socket

import pytest

from lijian.cluster.proxy import DASHBOARD_PAGES
from tests.http.harness import Api, Server
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-routing")

READ_WAIT_S = 30.0


def raw(
    server: Server, request_line: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send one request exactly as given (no client normalises its target); the status,
    headers and body of the answer."""
    head = request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", server.port), READ_WAIT_S) as c:
        c.sendall(head + b"\r\n")
        out = b""
        while chunk := c.recv(65_536):
            out += chunk
    top, _, body = out.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def problem(status: int, code: str, detail: str) -> dict[str, object]:
    titles = {404: "Not Found", 405: "Method Not Allowed"}
    return {"type": f"urn:lijian:problem:{code}", "title": titles[status], "status": status,
            "code": code, "detail": detail, "errors": []}  # fmt: skip


@pytest.mark.parametrize(
    ("request_line", "status", "code", "detail"),
    [
        (b"GET * HTTP/1.1", 404, "not_found", "GET /*"),
        (b"OPTIONS * HTTP/1.1", 404, "not_found", "OPTIONS /*"),
        (b"GET /nowhere HTTP/1.1", 404, "not_found", "GET /nowhere"),
        (b"POST /dashboard/api/nothing HTTP/1.1", 404, "not_found", "POST /dashboard/api/nothing"),
        (b"GET /docs/../login HTTP/1.1", 404, "not_found", "GET /docs/../login"),
        (b"GET /dashboard/./events HTTP/1.1", 404, "not_found", "GET /dashboard/./events"),
        (b"DELETE /login HTTP/1.1", 405, "method_not_allowed", "DELETE /login"),
        (b"GET /logout HTTP/1.1", 405, "method_not_allowed", "GET /logout"),
    ],
)
def test_what_is_not_served_is_answered_as_one_process_answers(
    server: Server, request_line: bytes, status: int, code: str, detail: str
) -> None:
    got_status, headers, body = raw(server, request_line)
    assert (got_status, headers["content-type"]) == (status, "application/problem+json"), body
    assert json.loads(body) == problem(status, code, detail)


def test_a_signed_path_with_a_dot_segment_is_refused_alike(server: Server, api: Api) -> None:
    path = f"/v1/./campaigns/{CID}/status"
    signed = api.signature_headers("GET", path, b"", as_="audit")
    status, _, body = raw(server, f"GET {path} HTTP/1.1".encode(), signed)
    assert status == 404, body
    assert json.loads(body) == problem(404, "not_found", f"GET {path}")
    # The same request without the dot segment is served, on every topology.
    assert api.get(f"/v1/campaigns/{CID}/status", as_="audit").status_code == 200


def test_the_docs_and_the_dashboard_pages_are_served_on_every_topology(server: Server) -> None:
    status, headers, body = raw(server, b"GET /docs HTTP/1.1")
    assert status == 200 and headers["content-type"].startswith("text/html"), body
    assert b"/openapi.json" in body
    status, headers, body = raw(server, b"GET /login HTTP/1.1")  # the sequencer's page
    assert status == 200 and b'name="csrf"' in body, body
    status, headers, _ = raw(server, b"GET / HTTP/1.1")
    assert (status, headers["location"]) == (303, "/login")


def test_the_passed_through_pages_are_exactly_the_dashboards_routes() -> None:
    from starlette.routing import Route

    from lijian.dashboard.routes import Dashboard

    routes = Dashboard.routes(_Unbuilt())  # type: ignore[arg-type]
    served: dict[str, set[str]] = {}
    for r in routes:
        if isinstance(r, Route):  # starlette adds HEAD to every GET, on both sides
            served.setdefault(r.path, set()).update(m for m in r.methods or () if m != "HEAD")
    assert served == {p: set(ms) for p, ms in DASHBOARD_PAGES}


class _Unbuilt:
    """Stands for a Dashboard's state: ``routes`` only names its bound methods."""

    def __getattr__(self, name: str) -> object:
        return lambda *a: None
