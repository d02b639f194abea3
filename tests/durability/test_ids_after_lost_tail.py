"""Redemption ids are never given twice, even by a ledger that lost its last entries.

The lost tail is made as a promoted asynchronous replica or a restored backup makes it:
a copy of the ledger file taken after N entries, while the original goes on granting.
The copy, served again, must give ids that neither it nor the lost tail ever gave.
"""

import re
import shutil

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.ledger import WRITER_TAG_LEN
from lijian.engine import Engine
from tests.support import catalog, order, settings

ID_RE = re.compile(rf"rd_a[0-9a-hjkmnp-tv-z]{{{WRITER_TAG_LEN}}}[0-9]{{10}}")


def grant(db, people: range) -> list[str]:
    e = Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        outs = [
            Blocking(e).redeem(order(i, person=f"p-{i}"), "unionpay", f"K{i}", "f") for i in people
        ]
        assert [o.status for o in outs] == [201] * len(people)
        return [o.body["id"] for o in outs]
    finally:
        e.close()


def test_a_ledger_that_lost_its_tail_gives_ids_never_seen_before(tmp_path):
    db, lost = tmp_path / "lijian.db", tmp_path / "replica.db"
    before = grant(db, range(0, 3))
    shutil.copyfile(db, lost)  # the replica stops here: everything after is its lost tail
    tail = grant(db, range(3, 6))
    assert len(set(before + tail)) == 6
    # The replica is promoted: three new orders, the same count of redemptions as the
    # lost tail had at each step, yet none of their ids was given before.
    after = grant(lost, range(10, 13))
    assert len(set(after)) == 3
    assert not set(after) & set(before + tail)
    # The count still reads as the position in the ledger, and the syntax is kept.
    assert [i[-10:] for i in tail] == [i[-10:] for i in after] == [f"{n:010d}" for n in (4, 5, 6)]
    assert all(ID_RE.fullmatch(i) for i in before + tail + after), before + tail + after
    # Each start of the writer has its own tag; one start's ids share it.
    tags = [{i[4 : 4 + WRITER_TAG_LEN] for i in ids} for ids in (before, tail, after)]
    assert all(len(t) == 1 for t in tags) and len(set.union(*tags)) == 3
    assert audit_db(lost).ok and audit_db(db).ok
