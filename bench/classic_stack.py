"""The classic flash-sale stack, as a baseline for lijian: FastAPI + uvicorn + Redis Lua.

    .venv/bin/python -m bench.classic_stack --port 8100 --workers 2

``POST /redeem`` takes an order shaped like lijian's (``bench.http_bench.order_body``:
order id, person, items), validates it with pydantic models, computes the discount the
way the seed campaign does (15 % of the payable amount, integer fen) and grants it with
one Lua script on Redis, through redis-py's asyncio client (with its hiredis parser,
``redis[hiredis]``, as redis-py recommends for speed): check the tranche's
remaining money and the person's savings cap, ``SET NX`` the order id (one grant per
order), ``DECRBY`` the tranche, ``INCRBY`` the person. 201 with the grant, or 200 with a
decline (``sold_out``, ``person_cap``, ``duplicate_order``). ``GET /noop`` answers a
small JSON: the ceiling of this stack.

``POST /grant`` is the lean variant, what one would write for the job alone: a 3-field
JSON body (``order_id``, ``person``, ``amount`` in fen, a 3-field pydantic model) and the
same Lua script granting ``amount``; 201 ``{"granted": true, "remaining_fen": ...}`` or
200 with the decline's reason.

What it leaves out is the point of the comparison: nothing is durable (Redis acknowledges
from memory; a crash loses grants that were answered), no request signature, nonce or
Idempotency-Key, no eligibility rules, no geofence, no audit log.

Configured by the environment (so that uvicorn's worker processes see it):
``CLASSIC_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), ``CLASSIC_PREFIX`` (the
key prefix of one run, default ``classic:``) and ``CLASSIC_PERSON_CAP_FEN``. The tranche
key ``{prefix}tranche`` must be set before the first request (``bench.classic_bench``
does it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

REDIS_URL = os.environ.get("CLASSIC_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("CLASSIC_PREFIX", "classic:")
PERSON_CAP_FEN = int(os.environ.get("CLASSIC_PERSON_CAP_FEN", "150000"))
RATE_BP = 1_500  # 15 % off, as campaigns/chengdu-2025-spring.toml
KEY_TTL_S = 86_400  # order and person keys expire: a forgotten run cleans itself up
POOL_SIZE = 64  # connections per worker (wrk holds 64 in flight across the workers)

# KEYS: tranche, person, order. ARGV: discount, person cap, ttl.
# Returns {1, remaining} on a grant, {0, reason} on a decline.
REDEEM_LUA = """
local d = tonumber(ARGV[1])
local remaining = tonumber(redis.call('GET', KEYS[1]) or '0')
if remaining < d then return {0, 'sold_out'} end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + d > tonumber(ARGV[2]) then return {0, 'person_cap'} end
if not redis.call('SET', KEYS[3], '1', 'EX', ARGV[3], 'NX') then
  return {0, 'duplicate_order'}
end
remaining = redis.call('DECRBY', KEYS[1], d)
if redis.call('INCRBY', KEYS[2], d) == d then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return {1, remaining}
"""


class Person(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    real_name_verified: bool = False


class Location(BaseModel):
    lng: float
    lat: float
    crs: Literal["wgs84", "gcj02", "bd09"] = "gcj02"


class Address(BaseModel):
    adcode: str = Field(pattern=r"^\d{6}$")


class Item(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    unit_price_fen: int = Field(ge=0)
    platform_discount_fen: int = Field(default=0, ge=0)


class Order(BaseModel):
    campaign_id: str
    platform: str
    order_id: str = Field(min_length=1, max_length=128)
    payment_channel: str
    person: Person
    device_location: Location
    delivery_address: Address
    items: list[Item] = Field(min_length=1)

    @property
    def payable_fen(self) -> int:
        return sum(i.quantity * i.unit_price_fen - i.platform_discount_fen for i in self.items)


class Grant(BaseModel):
    granted: Literal[True] = True
    order_id: str
    person_id: str
    discount_fen: int
    tranche_remaining_fen: int


class Decline(BaseModel):
    granted: Literal[False] = False
    order_id: str
    reason: str


class LeanGrant(BaseModel):
    order_id: str = Field(min_length=1, max_length=128)
    person: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = aioredis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=POOL_SIZE)
    client = aioredis.Redis(connection_pool=pool)
    app.state.redis = client
    app.state.redeem = client.register_script(REDEEM_LUA)
    yield
    await client.aclose()
    await pool.aclose()


app = FastAPI(title="classic flash sale", lifespan=lifespan)


@app.post("/redeem", status_code=201, response_model=Grant | Decline)
async def redeem(order: Order, request: Request) -> Grant | JSONResponse:
    discount = order.payable_fen * RATE_BP // 10_000
    keys = [f"{PREFIX}tranche", f"{PREFIX}p:{order.person.id}", f"{PREFIX}o:{order.order_id}"]
    ok, value = await request.app.state.redeem(
        keys=keys, args=[discount, PERSON_CAP_FEN, KEY_TTL_S]
    )
    if ok:
        return Grant(
            order_id=order.order_id,
            person_id=order.person.id,
            discount_fen=discount,
            tranche_remaining_fen=int(value),
        )
    decline = Decline(order_id=order.order_id, reason=value.decode())
    return JSONResponse(decline.model_dump(), status_code=200)


@app.post("/grant", status_code=201, response_model=None)
async def grant(body: LeanGrant, request: Request) -> dict[str, object] | JSONResponse:
    keys = [f"{PREFIX}tranche", f"{PREFIX}p:{body.person}", f"{PREFIX}o:{body.order_id}"]
    ok, value = await request.app.state.redeem(
        keys=keys, args=[body.amount, PERSON_CAP_FEN, KEY_TTL_S]
    )
    if ok:
        return {"granted": True, "remaining_fen": int(value)}
    return JSONResponse({"granted": False, "reason": value.decode()}, status_code=200)


@app.get("/noop")
async def noop() -> dict[str, bool]:
    return {"ok": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args()
    uvicorn.run(
        "bench.classic_stack:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
        backlog=4_096,
    )


if __name__ == "__main__":
    main()
