"""Litestar the idiomatic way: msgspec Struct body, signature check as a dependency."""

from __future__ import annotations

from typing import Annotated

from common import AuthError, verify_signature
from litestar import Litestar, Request, get, post
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException
from litestar.params import Parameter
from models_msgspec import Order, Redemption, redemption_for


async def authenticate(request: Request) -> str:
    body = await request.body()  # cached on the connection, `data` reuses it
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    h = request.headers
    try:
        return verify_signature(
            "POST",
            path,
            body,
            h.get("x-lijian-key"),
            h.get("x-lijian-timestamp"),
            h.get("x-lijian-nonce"),
            h.get("x-lijian-signature"),
        )
    except AuthError as e:
        raise NotAuthorizedException(str(e)) from None


@post("/v1/redemptions", status_code=201, dependencies={"client": Provide(authenticate)})
async def redeem(
    data: Order,
    client: str,
    idempotency_key: Annotated[
        str, Parameter(header="idempotency-key", min_length=1, max_length=255)
    ],
) -> Redemption:
    return redemption_for(data)


@get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


app = Litestar(route_handlers=[redeem, healthz])
