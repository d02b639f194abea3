"""``lijian call METHOD PATH``: sign and send one request, print the answer.

The secret comes from a clients file (``--clients``, or ``LIJIAN_CLIENTS``) and a key id
(``--key``, or ``LIJIAN_KEY``), or from ``LIJIAN_KEY`` and ``LIJIAN_SECRET``. The body
is sent byte for byte as the file holds it (an NDJSON catalogue keeps its newlines,
which the signature covers). Exit status: 0 for a 2xx answer, 1 for any other answer
(the problem is printed), 2 when nothing could be asked (bad input, server unreachable,
credentials the server refuses: 401, or 403 for a key without the route's role).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import httpx

    from lijian.client import Credentials

DEFAULT_URL = "http://127.0.0.1:8000"
ENV_URL = "LIJIAN_URL"
ENV_CLIENTS = "LIJIAN_CLIENTS"
BODY_MAX_BYTES = 256 * 1024 * 1024  # the server's largest body (a catalogue)
METHODS = ("GET", "POST", "PUT")
REFUSED = (401, 403)  # the server refuses the credentials (or their role): exit 2


def fail(command: str, message: str, code: int = 2) -> typer.Exit:
    """One line on stderr (no rich wrapping, no traceback), then the exit status."""
    sys.stderr.write(f"lijian {command}: {message}\n")
    return typer.Exit(code)


def credentials(clients: Path | None, key_id: str | None) -> Credentials:
    from lijian.client import Credentials

    clients = clients or (Path(os.environ[ENV_CLIENTS]) if os.environ.get(ENV_CLIENTS) else None)
    key_id = key_id or os.environ.get("LIJIAN_KEY") or None
    if clients is not None:
        return Credentials.from_clients_file(clients, key_id)
    return Credentials.from_env()


def _needs_key(method: str, path: str) -> bool:
    p = path.split("?", 1)[0].rstrip("/")
    return method == "POST" and (p == "/v1/redemptions" or p.endswith("/refunds"))


def _read_body(body: Path | None) -> bytes:
    if body is None:
        return b""
    if str(body) == "-":
        return sys.stdin.buffer.read(BODY_MAX_BYTES + 1)
    try:
        size = body.stat().st_size
        if size > BODY_MAX_BYTES:
            raise fail("call", f"{body}: {size:,} bytes, more than any endpoint takes")
        return body.read_bytes()
    except OSError as exc:
        raise fail("call", f"{body}: cannot read: {exc.strerror}") from None


def call(
    method: Annotated[str, typer.Argument(help="GET, POST or PUT")],
    path: Annotated[str, typer.Argument(help="e.g. /v1/campaigns/chengdu-2025-spring/status")],
    body: Annotated[
        Path | None, typer.Option("--body", help="file sent byte for byte ('-': stdin)")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="key id to sign with (default: LIJIAN_KEY)")
    ] = None,
    clients: Annotated[
        Path | None, typer.Option("--clients", help="clients TOML (default: LIJIAN_CLIENTS)")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help=f"server (default: LIJIAN_URL or {DEFAULT_URL})")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Idempotency-Key (redemptions and refunds get a new one if not given)"),
    ] = None,
    content_type: Annotated[
        str | None, typer.Option(help="default: NDJSON for .../catalog, else JSON")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 30.0,
) -> None:
    """Sign and send one request (docs/API.md); print the answer's body on stdout."""
    # Imported here, not at the top: the client pulls in httpx and the HTTP package, and
    # every other command (and ``lijian --help``) loads this module to register ``call``.
    import httpx

    from lijian.client import CredentialsError, LijianClient, new_idempotency_key
    from lijian.client.calls import JSON, NDJSON

    method = method.upper()
    if method not in METHODS:
        raise fail("call", f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not path.startswith("/"):
        raise fail("call", f"PATH must start with '/', got {path!r}")
    base = url or os.environ.get(ENV_URL) or DEFAULT_URL
    if not base.startswith(("http://", "https://")):
        raise fail("call", f"--url must be http(s)://host[:port], got {base!r}")
    try:
        creds = credentials(clients, key)
    except CredentialsError as exc:
        raise fail("call", str(exc)) from None
    data = _read_body(body)
    if content_type is None and data:
        content_type = NDJSON if path.split("?", 1)[0].endswith("/catalog") else JSON
    if idempotency_key is None and _needs_key(method, path):
        idempotency_key = new_idempotency_key()
    with LijianClient(base, creds, timeout_s=timeout_s) as api:
        try:
            r = api.request(method, path, data, content_type, idempotency_key)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise fail("call", f"cannot reach {base}: {reason}") from None
    replayed = " (replayed)" if r.headers.get("Idempotent-Replayed") == "true" else ""
    key_note = f", Idempotency-Key {idempotency_key}" if idempotency_key else ""
    sys.stderr.write(f"HTTP {r.status_code} {r.reason_phrase}{replayed}{key_note}\n")
    _print_body(r)
    if r.status_code in REFUSED:
        raise typer.Exit(2)  # the credentials are refused: nothing was asked (README)
    if r.status_code >= 300:
        raise typer.Exit(1)


def _print_body(r: httpx.Response) -> None:
    media = r.headers.get("content-type", "").split(";")[0].strip()
    if media.endswith("json"):
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if doc is not None:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
            if isinstance(doc, dict) and r.status_code >= 400 and "code" in doc:
                hint = _hint(str(doc["code"]))
                sys.stderr.write(f"{doc['code']}: {doc.get('detail', '')}{hint}\n")
            return
    sys.stdout.write(r.text)


def _hint(code: str) -> str:
    return {
        "bad_signature": " (is the secret the server's for this key?)",
        "unknown_key": " (the server's clients file has no such key id)",
        "timestamp_out_of_window": " (is this machine's clock right?)",
    }.get(code, "")
