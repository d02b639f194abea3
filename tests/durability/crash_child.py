"""A child process that grants under load and prints every acknowledged result.

Usage: python -m tests.durability.crash_child DB ROUND

A line is printed only after the engine acknowledged it (after the commit's fsync):
``H <redemption id>`` for a grant, ``C <redemption id>`` for a capture. The parent
kills this process with SIGKILL at a random moment and then checks that every printed
line is in the ledger.
"""

import sys

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from tests.support import catalog, order, settings

BATCH = 200
MAX_ROUNDS = 10_000


def main() -> None:
    db, round_no = sys.argv[1], int(sys.argv[2])
    s = settings(campaign={"budget_fen": 10**12})
    engine = Engine([s], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    if round_no == 0:
        Blocking(engine).catalog_upsert(list(catalog().rows()))
    out = sys.stdout
    for i in range(MAX_ROUNDS):
        reqs = []
        for j in range(BATCH):
            n = f"{round_no}-{i}-{j}"
            reqs.append(
                (
                    order(
                        n,
                        # persons per round and batch: a fast machine would otherwise
                        # bring 97 persons to their cap (R7) and leave nothing to grant
                        person=f"p-{round_no}-{i}-{j % 97}",
                        price_fen=1_000,
                        quantity=1,
                        platform_discount_fen=0,
                    ),
                    "unionpay",
                    f"k-{n}",
                    f"fp-{n}",
                )
            )
        outs = Blocking(engine).redeem_many(reqs)
        ids = [o.body["id"] for o in outs if o.status == 201]
        out.write("".join(f"H {rid}\n" for rid in ids))
        out.flush()
        caps = Blocking(engine).run_many([("capture", rid) for rid in ids[::2]])
        out.write("".join(f"C {c.body['id']}\n" for c in caps if c.status == 200))
        out.flush()


if __name__ == "__main__":
    main()
