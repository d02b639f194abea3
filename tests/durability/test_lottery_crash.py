"""kill -9 during a lottery: every acknowledged registration is in the ledger after a
restart, no voucher id is given twice, every acknowledged draw decided all of its day's
registrations (as many winners as the tranche holds, the rest lost), and the audit
recomputes the winners from the revealed seed (replay from zero, invariants, stored
balances)."""

import random
from collections import Counter

import pytest

from lijian.audit import audit_db
from lijian.core.status import VoucherStatus
from tests.durability.lottery_child import BATCH, BATCHES_PER_DAY
from tests.durability.test_crash import replay, run_and_kill

KILLS = 8
WINNERS_A_DAY = 100  # the tranche holds 100 vouchers


@pytest.mark.slow
def test_every_acknowledged_registration_and_draw_survives_sigkill(tmp_path):
    rng = random.Random(20250213)
    db = tmp_path / "lottery.db"
    registered: list[str] = []
    drawn: set[str] = set()
    for round_no in range(KILLS):
        for line in run_and_kill(db, round_no, rng, module="tests.durability.lottery_child"):
            kind, what = line.split()
            (registered.append if kind == "R" else drawn.add)(what)
        led = replay(db)
        missing = set(registered) - set(led.vouchers.by_id)
        assert not missing, f"round {round_no}: acknowledged registrations lost"
        by_day: dict[str, Counter[VoucherStatus]] = {}
        for v in led.vouchers.by_id.values():
            by_day.setdefault(v.tranche_day, Counter())[v.status] += 1
        for day in drawn:
            n = by_day[day]
            assert n[VoucherStatus.REGISTERED] == 0, f"{day}: a registration left undecided"
            # Winners are claimed, or expired once their day closed (never used here).
            won = n[VoucherStatus.CLAIMED] + n[VoucherStatus.EXPIRED]
            lost = BATCH * BATCHES_PER_DAY - WINNERS_A_DAY
            assert (won, n[VoucherStatus.LOST], sum(n.values())) == (
                WINNERS_A_DAY,
                lost,
                won + lost,
            )
    assert len(registered) == len(set(registered))  # no voucher id acknowledged twice
    assert drawn and len(registered) > KILLS * BATCH  # the child really ran lottery days
    report = audit_db(db)  # recomputes every day's winners from its revealed seed
    assert report.ok, report.violations
