"""FastAPI the idiomatic way: pydantic body model, signature check as a dependency."""

from __future__ import annotations

from typing import Annotated

from common import AuthError, verify_signature
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from models_pydantic import Order, Redemption, redemption_for

app = FastAPI(title="lijian bench")


async def authenticate(
    request: Request,
    x_lijian_key: Annotated[str | None, Header()] = None,
    x_lijian_timestamp: Annotated[str | None, Header()] = None,
    x_lijian_nonce: Annotated[str | None, Header()] = None,
    x_lijian_signature: Annotated[str | None, Header()] = None,
) -> str:
    body = await request.body()  # cached by Starlette, the body model reuses it
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    try:
        return verify_signature(
            "POST", path, body, x_lijian_key, x_lijian_timestamp, x_lijian_nonce, x_lijian_signature
        )
    except AuthError as e:
        raise HTTPException(401, str(e)) from None


@app.exception_handler(HTTPException)
async def problem_handler(request: Request, exc: HTTPException) -> JSONResponse:
    code = "unauthorized" if exc.status_code == 401 else "error"
    return JSONResponse(
        {
            "type": f"https://lijian.example/problems/{code}",
            "title": code,
            "status": exc.status_code,
            "code": code,
            "detail": exc.detail,
        },
        status_code=exc.status_code,
        media_type="application/problem+json",
    )


@app.post("/v1/redemptions", status_code=201, response_model=Redemption)
async def redeem(
    order: Order,
    client: Annotated[str, Depends(authenticate)],
    idempotency_key: Annotated[str, Header(min_length=1, max_length=255)],
) -> Redemption:
    return redemption_for(order)


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}
