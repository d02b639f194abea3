"""Plain Starlette routes; the body is decoded with msgspec by hand."""

from __future__ import annotations

import msgspec
from common import HEALTHZ_BODY, AuthError, check_idempotency_key, verify_signature
from models_msgspec import Order, problem, redemption_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_decode_order = msgspec.json.Decoder(Order).decode
_encode = msgspec.json.Encoder().encode
_PROBLEM = "application/problem+json"


def authenticate(request: Request, body: bytes) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    h = request.headers
    return verify_signature(
        "POST",
        path,
        body,
        h.get("x-lijian-key"),
        h.get("x-lijian-timestamp"),
        h.get("x-lijian-nonce"),
        h.get("x-lijian-signature"),
    )


async def redeem(request: Request) -> Response:
    body = await request.body()
    try:
        authenticate(request, body)
    except AuthError as e:
        return Response(problem(401, "unauthorized", str(e)), 401, media_type=_PROBLEM)
    try:
        check_idempotency_key(request.headers.get("idempotency-key"))
        order = _decode_order(body)
    except (ValueError, msgspec.ValidationError) as e:
        return Response(problem(422, "invalid_request", str(e)), 422, media_type=_PROBLEM)
    return Response(_encode(redemption_for(order)), 201, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(HEALTHZ_BODY, media_type="application/json")


app = Starlette(
    routes=[
        Route("/v1/redemptions", redeem, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
