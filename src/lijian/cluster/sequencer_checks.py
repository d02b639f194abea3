"""How the sequencer decodes and checks a call's arguments (``Served.decode``).

Each wire method's arguments are decoded with their types, then checked by the rules the
HTTP layer applies to the same request (``lijian.http.arguments``: ids, keys, days,
pages, clock moves), raising the problem HTTP would answer: what a peer sends on the wire
cannot reach the engine in a shape one process would have refused.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from lijian.cluster.order_decode import order_decoder
from lijian.core.order import Order, RefundRequest
from lijian.http import arguments as a
from lijian.http.types import ADVANCE_S_MAX
from lijian.jsonish import Json


def decoder(
    *types: object, check: Callable[..., None] | None = None
) -> Callable[[bytes], tuple[object, ...]]:
    """Decode a call's arguments with their types, then ``check`` them (raising the
    problem HTTP would answer): nothing reaches the engine unchecked. An order first
    is decoded by ``order_decode.py`` (the same values and errors, cheaper)."""
    decode: Callable[[bytes], tuple[object, ...]]
    if types and types[0] is Order:
        decode = order_decoder(*types[1:])
    else:
        decode = msgspec.msgpack.Decoder(tuple[*types] if types else tuple[()]).decode  # type: ignore[valid-type]
    if check is None:
        return decode

    def checked(raw: bytes) -> tuple[object, ...]:
        args = decode(raw)
        check(*args)
        return args

    return checked


def ids(*names: str) -> Callable[..., None]:
    """A check that each argument, in order, is an id called by its name."""

    def check(*values: object) -> None:
        for name, v in zip(names, values, strict=False):
            assert isinstance(v, str)  # decoded as one
            a.check_id(name, v)

    return check


# (The client a redemption or a refund names is checked against its ticket: the
# sequencer's _forbidden.)
def check_redeem(order: Order, client_id: str, key: str, fp: str) -> None:
    a.check_idempotency_key(key)
    a.check_fingerprint(fp)


def check_refund(rid: str, req: RefundRequest, client_id: str, key: str, fp: str) -> None:
    a.check_id("redemption_id", rid)
    a.check_idempotency_key(key)
    a.check_fingerprint(fp)


def check_operate(op: str, cid: str, body: Json, by: str) -> None:
    # The body's fields are the core's to check (lijian.core.steering), as over HTTP.
    a.check_id("operation", op)
    a.check_id("campaign_id", cid)
    a.check_id("key_id", by)


def check_report(cid: str, day: str) -> None:
    a.check_id("campaign_id", cid)
    a.check_day(day)


def check_risk(cid: str, day: str, after: int, limit: int) -> None:
    check_report(cid, day)
    a.check_risk_page(after, limit)


def check_clock(target_ms: int | None, advance_ms: int | None) -> None:
    a.check_clock(target_ms, advance_ms, ADVANCE_S_MAX * 1000)


def check_fresh(key_id: str, nonce: str, ts_s: int) -> None:
    a.check_id("key_id", key_id)
    a.check_id("nonce", nonce)
