"""Pre-sign N redemption requests, one per line, for wrk's post.lua.

Line format (tab-separated): nonce, timestamp, signature, idempotency key, body.
Every request has a unique nonce, order id and idempotency key, so the app's
nonce check stays ON during the benchmark. Timestamps are "now": use the file
within 300 s (run.py generates a fresh one right before each POST run).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from common import CLIENTS, EXAMPLE_ORDER, sign

PATH = "/v1/redemptions"


def generate(count: int, out: str, prefix: str) -> None:
    secret = CLIENTS["unionpay"]
    ts = str(int(time.time()))
    order = copy.deepcopy(EXAMPLE_ORDER)
    order["order_id"] = "@ORDER@"
    order["person"]["id"] = "@PERSON@"  # type: ignore[index]
    template = json.dumps(order, ensure_ascii=False, separators=(",", ":"))
    with open(out, "w", encoding="utf-8") as f:
        for i in range(count):
            body = template.replace("@ORDER@", f"JD-20250212-{prefix}{i:09d}").replace(
                "@PERSON@", f"p-{prefix}{i % 100_000:06d}"
            )
            nonce = f"{prefix}-{i:012d}-bench-nonce"
            sig = sign(secret, "POST", PATH, ts, nonce, body.encode())
            f.write(f"{nonce}\t{ts}\t{sig}\tidem-{prefix}-{i}\t{body}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--out", default="/tmp/lijian-bench-requests.tsv")
    p.add_argument("--prefix", default="n0", help="makes nonces unique across files")
    a = p.parse_args()
    generate(a.count, a.out, a.prefix)


if __name__ == "__main__":
    main()
