"""The engine of the torture run (the sequencer's Engine on PostgreSQL): grants, captures
and voids under load until killed.

Usage: python -m tests.postgres.torture_child URL WORKER WORKERS SEED (WORKERS is 1: one
ledger has one writer)

Prints a line only after the engine acknowledged it (after the commit):
``H <id> <discount_fen> <person>`` for a grant, ``C <id>`` / ``V <id>`` for a capture or a
void (of any held redemption, also one of an earlier incarnation's). Exits on the first
engine failure (a PostgreSQL restart stops the engine: fail-stop), and the supervisor
restarts it, as lijian serve's supervisor restarts its sequencer.
"""

from __future__ import annotations

import random
import sys

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from tests.postgres.torture_config import (
    BATCH,
    CLOCK_STEP_MS,
    MAX_ROUNDS,
    PERSONS,
    START,
    campaign,
)
from tests.support import catalog, order


def main() -> None:
    url, worker, workers, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = random.Random(f"{seed}")
    assert worker == 0 and workers == 1, "one ledger, one writer"
    e = Engine([campaign()], url, parse_clock(f"manual:{START}"))
    Blocking(e).catalog_upsert(list(catalog().rows()))
    out = sys.stdout

    def held(n: int) -> list[str]:
        ids = [rid for rid, r in e.ledger.redemptions.items() if r.status == "held"]
        return rng.sample(ids, min(n, len(ids)))

    for i in range(MAX_ROUNDS):
        reqs = []
        for _ in range(BATCH):
            n = f"{seed}-{i}-{rng.randrange(10**9)}"
            person = f"p-{rng.randrange(PERSONS)}"
            price = rng.randrange(1_000, 60_000)
            o = order(n, person=person, price_fen=price, quantity=1, platform_discount_fen=0)
            reqs.append((o, "unionpay", f"k-{n}", f"fp-{n}"))
        outs = Blocking(e).redeem_many(reqs)
        out.write(
            "".join(
                f"H {o.body['id']} {o.body['discount_fen']} {o.body['person_id']}\n"
                for o in outs
                if o.status == 201
            )
        )
        out.flush()
        ids: list[str] = e.call(held, 6)
        calls = [("capture" if rng.random() < 0.6 else "void", rid) for rid in ids]
        res = Blocking(e).run_many(calls)
        for (fn, rid), r in zip(calls, res, strict=True):
            want = "captured" if fn == "capture" else "voided"
            if r.status == 200 and r.body.get("status") == want:
                out.write(f"{want[0].upper()} {rid}\n")
        out.flush()
        Blocking(e).set_clock(advance_ms=CLOCK_STEP_MS)


if __name__ == "__main__":
    main()
