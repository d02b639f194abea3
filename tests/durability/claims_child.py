"""A child process that claims vouchers under load and prints every acknowledged one.

Usage: python -m tests.durability.claims_child DB ROUND

``V <voucher id>`` is printed only after the engine acknowledged the claim (after the
commit's fsync); ``U <voucher id>`` after the capture of an order paid with it. The
parent kills this process with SIGKILL at a random moment and checks the ledger.
"""

import asyncio
import sys
from typing import Any

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.claims import ClaimRequest
from lijian.core.order import Location, Person
from lijian.engine import Engine
from tests.support import TIANFU_SQUARE, catalog, order, settings

BATCH = 100
MAX_ROUNDS = 10_000
VALUE_FEN = 3_000


def claim_settings() -> Any:
    return settings(
        campaign={"budget_fen": 10**12},
        refunds={"full_refund_restores_quota": "immediately"},
        claims={"mode": "claim", "voucher_value_fen": VALUE_FEN, "person_claims_per_day": 0},
    )


def main() -> None:
    db, round_no = sys.argv[1], int(sys.argv[2])
    engine = Engine([claim_settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    if round_no == 0:
        Blocking(engine).catalog_upsert(list(catalog().rows()))
    where = Location(*TIANFU_SQUARE, "gcj02")
    cid = engine.campaign_ids[0]

    async def claims(reqs: list[tuple[str, str]]) -> list[Any]:
        return await asyncio.gather(*(
            engine.claim(cid, ClaimRequest(Person(p, True), where), "unionpay", k, "0" * 64)
            for p, k in reqs
        ))  # fmt: skip

    out = sys.stdout
    for i in range(MAX_ROUNDS):
        # A person claims at most 50 vouchers (the cap is 150,000 fen): persons per batch.
        reqs = [(f"p-{round_no}-{i}-{j}", f"ck-{round_no}-{i}-{j}") for j in range(BATCH)]
        outs = engine.call(claims, reqs)
        won = [(o.body["id"], o.body["person_id"]) for o in outs if o.status == 201]
        out.write("".join(f"V {vid}\n" for vid, _ in won))
        out.flush()
        paid = [
            (order(f"{vid}", person=pid, voucher_id=vid), "unionpay", f"k-{vid}", f"fp-{vid}")
            for vid, pid in won[::4]
        ]
        holds = Blocking(engine).redeem_many(paid)
        rids = [(o.body["id"], vid) for o, (vid, _) in zip(holds, won[::4], strict=True)
                if o.status == 201]  # fmt: skip
        caps = Blocking(engine).run_many([("capture", rid) for rid, _ in rids])
        out.write("".join(f"U {vid}\n" for c, (_, vid) in zip(caps, rids, strict=True)
                          if c.status == 200))  # fmt: skip
        out.flush()


if __name__ == "__main__":
    main()
