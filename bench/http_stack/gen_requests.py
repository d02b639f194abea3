"""Pre-sign N redemption requests for wrk's post.lua.

Every request has a unique nonce, order id and idempotency key, so the app's
nonce check stays ON during the benchmark. Timestamps are "now": use the files
within 300 s (run.py writes fresh ones right before each POST run).

Output: one file per wrk thread, ``OUT.0``, ``OUT.1``, ..., each the raw HTTP/1.1
requests for that thread, separated by NUL bytes. Raw bytes, not fields to
assemble, so that a wrk thread loads them in a few milliseconds: wrk starts
thread 0 before it has initialised thread 1, and a slow start-up there would
let thread 0 send uncounted-time requests and inflate requests/s.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from common import CLIENTS, EXAMPLE_ORDER, sign

PATH = "/v1/redemptions"


def generate(count: int, out: str, prefix: str, threads: int = 2) -> None:
    secret = CLIENTS["unionpay"]
    ts = str(int(time.time()))
    order = copy.deepcopy(EXAMPLE_ORDER)
    order["order_id"] = "@ORDER@"
    order["person"]["id"] = "@PERSON@"  # type: ignore[index]
    template = json.dumps(order, ensure_ascii=False, separators=(",", ":"))
    files = [open(f"{out}.{t}", "wb") for t in range(threads)]  # noqa: SIM115
    try:
        for i in range(count):
            body = (
                template.replace("@ORDER@", f"JD-20250212-{prefix}{i:09d}")
                .replace("@PERSON@", f"p-{prefix}{i % 100_000:06d}")
                .encode()
            )
            nonce = f"{prefix}-{i:012d}-bench-nonce"
            sig = sign(secret, "POST", PATH, ts, nonce, body)
            head = (
                f"POST {PATH} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                "X-Lijian-Key: unionpay\r\n"
                f"X-Lijian-Timestamp: {ts}\r\n"
                f"X-Lijian-Nonce: {nonce}\r\n"
                f"X-Lijian-Signature: {sig}\r\n"
                f"Idempotency-Key: idem-{prefix}-{i}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            files[i % threads].write(head.encode() + body + b"\0")
    finally:
        for f in files:
            f.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=150_000)
    p.add_argument("--out", default="/tmp/lijian-bench-requests")
    p.add_argument("--prefix", default="n0", help="makes nonces unique across files")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (one file each)")
    a = p.parse_args()
    generate(a.count, a.out, a.prefix, a.threads)


if __name__ == "__main__":
    main()
