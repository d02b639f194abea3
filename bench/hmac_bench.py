"""The request signature's HMAC, per request, three ways in one run (timeit, best of 7).

    .venv/bin/python -m bench.hmac_bench [--number 200000]

- ``hmac.new``: the key absorbed at every request (two extra compressions);
- ``HMAC.copy``: one ``hmac.new(secret, digestmod=sha256)`` per client, copied per
  request (what ``http/auth.py`` did before);
- ``HmacPads``: the two key pads hashed once, two ``hashlib`` copies per request (what it
  does now).

Each over a signing string of a redemption (method, path, timestamp, 32-character nonce,
body hash: 130 bytes), every result checked equal to ``hmac.new``'s first. Then the same
for the whole check of a signed request's HMAC (``Authenticator.verify_raw``: the signing
string, the HMAC, the constant-time comparison; the nonce memory left out), before (a
subclass with the copied ``hmac.HMAC``) and now.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import timeit
from typing import Any

from lijian.http.auth import Authenticator, HmacPads, Pending
from lijian.http.clients import Client

SECRET = b"bench-unionpay-secret"
PREFIX = b"POST\n/v1/redemptions\n"
TS, NONCE = b"1733570000", b"0123456789abcdef0123456789abcdef"
BODY_HEX = hashlib.sha256(b"{}").hexdigest().encode()
MSG = b"%s%s\n%s\n%s" % (PREFIX, TS, NONCE, BODY_HEX)


class CopiedHmac(Authenticator):
    """The verification as it was: a prepared ``hmac.HMAC`` per client, copied."""

    def __init__(self, clients: dict[str, Client], **kw: Any) -> None:
        super().__init__(clients, **kw)
        self._keyed = {k: hmac.new(c.secret, digestmod=hashlib.sha256) for k, c in clients.items()}

    def _mac_hex(self, client: Client, msg: bytes) -> bytes:
        mac = self._keyed[client.key_id].copy()
        mac.update(msg)
        return mac.hexdigest().encode()


def best_us(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    keyed = hmac.new(SECRET, digestmod=hashlib.sha256)
    pads = HmacPads(SECRET)

    def by_new() -> str:
        return hmac.new(SECRET, MSG, hashlib.sha256).hexdigest()

    def by_copy() -> str:
        mac = keyed.copy()
        mac.update(MSG)
        return mac.hexdigest()

    def by_pads() -> str:
        return pads.hexdigest(MSG)

    assert by_new() == by_copy() == by_pads()
    client = Client("unionpay", SECRET, "channel")
    auth = Authenticator({"unionpay": client}, remember_nonces=False)
    p = Pending(client, TS.decode(), int(TS), NONCE.decode(), by_new().encode(), TS, NONCE)
    assert auth.verify_raw(p, PREFIX, BODY_HEX) is client
    before = CopiedHmac({"unionpay": client}, remember_nonces=False)
    assert before.verify_raw(p, PREFIX, BODY_HEX) is client
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"HMAC-SHA256 of a {len(MSG)}-byte signing string, µs per request, best of 7 "
          f"× {args.number:,} (load average {load})")  # fmt: skip
    cases = [("hmac.new", by_new), ("HMAC.copy (before)", by_copy), ("HmacPads (now)", by_pads),
             ("verify_raw, before", lambda: before.verify_raw(p, PREFIX, BODY_HEX)),
             ("verify_raw, now", lambda: auth.verify_raw(p, PREFIX, BODY_HEX))]  # fmt: skip
    got = {name: best_us(fn, args.number) for name, fn in cases}
    for name, us in got.items():
        print(f"  {name:22} {us:6.3f} µs  {us / got['hmac.new']:5.2f}× hmac.new")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
