"""kill -9 during claims: every acknowledged voucher (and every acknowledged use of
one) is in the ledger after a restart, no voucher id is given twice, and the audit
(replay from zero, invariants, stored balances) passes."""

import random

import pytest

from lijian.audit import audit_db
from lijian.core.status import VoucherStatus
from tests.durability.test_crash import replay, run_and_kill

KILLS = 8


@pytest.mark.slow
def test_every_acknowledged_claim_survives_sigkill(tmp_path):
    rng = random.Random(20200327)
    db = tmp_path / "claims.db"
    acked: list[str] = []
    used: set[str] = set()
    for round_no in range(KILLS):
        for line in run_and_kill(db, round_no, rng, module="tests.durability.claims_child"):
            kind, vid = line.split()
            (acked.append if kind == "V" else used.add)(vid)
        led = replay(db)
        missing = set(acked) - set(led.vouchers.by_id)
        assert not missing, f"round {round_no}: acknowledged claims lost: {sorted(missing)[:5]}"
        lost_uses = [v for v in used if led.vouchers.by_id[v].status != VoucherStatus.USED]
        assert not lost_uses, f"round {round_no}: acknowledged uses lost"
    assert len(acked) == len(set(acked))  # no voucher id acknowledged twice
    assert len(acked) > KILLS * 100 and used  # the child really was claiming and paying
    led = replay(db)
    paid_by = [v.redemption_id for v in led.vouchers.by_id.values() if v.redemption_id]
    assert len(paid_by) == len(set(paid_by)) and len(paid_by) >= len(used)
    report = audit_db(db)
    assert report.ok, report.violations
