"""A child process that runs lottery days under load and prints what was acknowledged.

Usage: python -m tests.durability.lottery_child DB ROUND

Each day: registrations in the first minute after claim_open (``R <voucher id>`` printed
only after the engine acknowledged it, after the commit's fsync), then the clock moved
to the day's ``draw_at`` (``D <day>`` printed once the move, and so the draw, is
acknowledged). The parent kills this process with SIGKILL at a random moment: during
registrations, during a draw, or between them.
"""

import asyncio
import datetime as dt
import sys
from typing import Any

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.claims import ClaimRequest
from lijian.core.order import Location, Person
from lijian.engine import Engine
from tests.support import TIANFU_SQUARE, catalog, settings

TZ = dt.timezone(dt.timedelta(hours=8))
FIRST_DAY = dt.date(2025, 2, 13)  # the day after the start: its draw committed before it
DAYS_PER_ROUND = 5
LAST_DAY = dt.date(2025, 3, 31)
BATCH = 100
BATCHES_PER_DAY = 3  # 300 registrations a day for 100 vouchers
VALUE_FEN = 3_000


def lottery_settings() -> Any:
    days = (LAST_DAY - dt.date(2025, 2, 12)).days + 1
    return settings(
        campaign={"budget_fen": days * 100 * VALUE_FEN, "end_date": LAST_DAY.isoformat(),
                  "leftover": "expire"},
        # Unused winners' vouchers expire at their day's close; forfeit keeps their value
        # out of later tranches, so that every day's draw has exactly 100 winners.
        refunds={"full_refund_restores_quota": "immediately", "clawback_returns_to": "forfeit"},
        claims={"mode": "claim", "voucher_value_fen": VALUE_FEN, "claim_open": "10:00",
                "claim_close": "22:00", "allocation": "lottery", "lottery_register_s": 60},
    )  # fmt: skip


def at_ms(day: dt.date, hh: int, mm: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=TZ).timestamp() * 1000)


def main() -> None:
    db, round_no = sys.argv[1], int(sys.argv[2])
    engine = Engine([lottery_settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    if round_no == 0:
        Blocking(engine).catalog_upsert(list(catalog().rows()))
    where = Location(*TIANFU_SQUARE, "gcj02")
    cid = engine.campaign_ids[0]

    async def register(reqs: list[tuple[str, str]]) -> list[Any]:
        return await asyncio.gather(*(
            engine.claim(cid, ClaimRequest(Person(p, True), where), "unionpay", k, "0" * 64)
            for p, k in reqs
        ))  # fmt: skip

    out = sys.stdout
    for k in range(DAYS_PER_ROUND):
        day = FIRST_DAY + dt.timedelta(days=round_no * DAYS_PER_ROUND + k)
        assert day <= LAST_DAY
        engine.call(engine.set_clock, at_ms(day, 10, 0))
        for i in range(BATCHES_PER_DAY):
            reqs = [(f"p-{day}-{i}-{j}", f"rk-{day}-{i}-{j}") for j in range(BATCH)]
            outs = engine.call(register, reqs)
            assert all(o.status == 202 for o in outs), outs[0].body
            out.write("".join(f"R {o.body['id']}\n" for o in outs))
            out.flush()
        engine.call(engine.set_clock, at_ms(day, 10, 1))  # draw_at: the day's draw
        out.write(f"D {day}\n")
        out.flush()


if __name__ == "__main__":
    main()
