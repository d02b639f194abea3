"""The floor: a bare ASGI callable with msgspec, no framework at all."""

from __future__ import annotations

from typing import Any

import msgspec
from common import HEALTHZ_BODY, AuthError, check_idempotency_key, verify_signature
from models_msgspec import Order, problem, redemption_for

_decode_order = msgspec.json.Decoder(Order).decode
_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", b"application/problem+json")]
_BODY_MAX_BYTES = 1 << 20


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _BODY_MAX_BYTES:
            raise ValueError("body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    # content-length spares uvicorn a chunked response (an extra write per request)
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redeem(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await _read_body(receive)
    h = {k: v for k, v in scope["headers"] if k.startswith(b"x-lijian-") or k == b"idempotency-key"}
    path = scope["path"]
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")

    def header(name: bytes) -> str | None:
        value = h.get(name)
        return None if value is None else value.decode("latin-1")

    try:
        verify_signature(
            "POST",
            path,
            body,
            header(b"x-lijian-key"),
            header(b"x-lijian-timestamp"),
            header(b"x-lijian-nonce"),
            header(b"x-lijian-signature"),
        )
    except AuthError as e:
        return await _send(send, 401, _PROBLEM, problem(401, "unauthorized", str(e)))
    try:
        check_idempotency_key(header(b"idempotency-key"))
        order = _decode_order(body)
    except (ValueError, msgspec.ValidationError) as e:  # msgspec.DecodeError is a ValueError
        return await _send(send, 422, _PROBLEM, problem(422, "invalid_request", str(e)))
    await _send(send, 201, _JSON, _encode(redemption_for(order)))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    method, path = scope["method"], scope["path"]
    if path == "/v1/redemptions" and method == "POST":
        await _redeem(scope, receive, send)
    elif path == "/healthz" and method == "GET":
        await _send(send, 200, _JSON, HEALTHZ_BODY)
    else:
        await _send(send, 404, _PROBLEM, problem(404, "not_found", path))
