"""FastAPI with a lean hot route: the handler takes the raw Request and decodes with msgspec.

Not one of the four asked-for stacks: it separates FastAPI's routing cost from
pydantic's validation cost (the other routes of an app could stay idiomatic).
"""

from __future__ import annotations

import msgspec
from app_starlette import authenticate
from common import HEALTHZ_BODY, AuthError, check_idempotency_key
from fastapi import FastAPI, Request
from fastapi.responses import Response
from models_msgspec import Order, problem, redemption_for

app = FastAPI(title="lijian bench (lean route)")
_decode_order = msgspec.json.Decoder(Order).decode
_encode = msgspec.json.Encoder().encode
_PROBLEM = "application/problem+json"


@app.post("/v1/redemptions", status_code=201, response_class=Response)
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


@app.get("/healthz", response_class=Response)
async def healthz() -> Response:
    return Response(HEALTHZ_BODY, media_type="application/json")
