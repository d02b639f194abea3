"""Tampering cases for the hash chain, run on SQLite (test_chain.py) and PostgreSQL
(tests/postgres/test_pg_chain.py): each edits the stored ledger directly and expects
``lijian audit`` to name the first broken seq."""

from __future__ import annotations

from lijian.audit import CHAIN_CHECK, AuditReport, audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.chain import GENESIS, link
from lijian.core.entries import decode
from lijian.engine import Engine
from tests.evidence.ledger_days import (
    Tamper,
    build_two_days,
    local_ms,
    more_payable,
    other_person,
)
from tests.support import order, settings


def chain_problems(rep: AuditReport) -> list[str]:
    return next(c["problems"] for c in rep.checks if c["name"] == CHAIN_CHECK)  # type: ignore[return-value]


def failing_checks(rep: AuditReport) -> list[str]:
    return [str(c["name"]) for c in rep.checks if not c["ok"]]


def broken_at(rep: AuditReport) -> int:
    (problem,) = chain_problems(rep)
    assert problem.startswith("hash chain broken at seq "), problem
    return int(problem.split()[5].rstrip(":"))


def case_intact_chain_verifies(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    rows = t.rows()
    assert len(rows) >= 14
    h = GENESIS
    for _, body, chain in rows:  # the definition, re-implemented from core/chain.py's text
        h = link(h, body)
        assert chain == h
    rep = audit_db(db)
    assert rep.ok, rep.violations
    assert chain_problems(rep) == []


def case_edit_with_balances_fixed_up(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    seq = t.first_hold_seq(1)
    t.rewrite_body(seq, other_person)
    t.fix_up_balances([settings()])
    rep = audit_db(db)
    # The forger made every figure agree with the rewritten log: only the chain sees it.
    assert failing_checks(rep) == [CHAIN_CHECK], rep.violations
    assert broken_at(rep) == seq


def case_edit_that_balances_never_see(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    seq = t.first_hold_seq(2)
    t.rewrite_body(seq, more_payable)  # GMV changes, no balance does
    t.run("DELETE FROM snapshots")  # (the snapshot still holds the old redemption)
    rep = audit_db(db)
    assert failing_checks(rep) == [CHAIN_CHECK]
    assert broken_at(rep) == seq


def case_one_byte_changed_in_place(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    seq, body, _ = t.rows()[-1]
    flipped = body[:-1] + bytes([body[-1] ^ 0x01])
    t.run("UPDATE entries SET body = ? WHERE seq = ?", (flipped, seq))
    assert broken_at(audit_db(db)) == seq


def case_delete(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    seq = t.first_hold_seq(3)  # the voided hold: its release entry comes later
    following = next(s for s, _, _ in t.rows() if s > seq)
    t.delete(seq)
    assert broken_at(audit_db(db)) == following


def case_day_close_record_edited(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    (close_seq,) = t.run("SELECT seq FROM chain_days WHERE day = '2025-02-12'")[0]
    t.run("UPDATE chain_days SET head = ? WHERE seq = ?", (bytes(32), close_seq))
    rep = audit_db(db)
    assert chain_problems(rep) == [
        f"day close chengdu-2025-spring 2025-02-12: head at seq {close_seq} is not the chain there"
    ]


def case_insert_with_its_own_chain_right(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    rows = t.rows()
    seq = t.first_hold_seq(0)
    at = next(i for i, r in enumerate(rows) if r[0] == seq)
    body = rows[at][1]  # a copy of a real hold, chained correctly onto its predecessor
    t.insert_after(seq, body, link(rows[at][2], body))
    assert decode(t.rows()[at + 1][1]) == decode(body)
    # The inserted row itself checks out; the row after it no longer does.
    assert broken_at(audit_db(db)) == seq + 2


def case_reorder(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    a, b = t.first_hold_seq(1), t.first_hold_seq(2)
    t.swap(a, b)
    assert broken_at(audit_db(db)) == a


def case_rechained_suffix_still_differs_from_published_day_head(db: str) -> None:
    """A forger who recomputes every chain after the edit passes the stored check, but
    the day head published (and kept by an outsider) no longer matches."""
    build_two_days(db)
    t = Tamper(db)
    (kept_head,) = t.run("SELECT head FROM chain_days WHERE day = '2025-02-12'")[0]
    seq = t.first_hold_seq(1)
    t.rewrite_body(seq, more_payable)
    h = GENESIS
    for s, body, _ in t.rows():
        h = link(h, body)
        t.run("UPDATE entries SET chain = ? WHERE seq = ?", (h, s))
    (close_seq,) = t.run("SELECT seq FROM chain_days WHERE day = '2025-02-12'")[0]
    (now_head,) = t.run("SELECT chain FROM entries WHERE seq = ?", (close_seq,))[0]
    assert bytes(now_head) != bytes(kept_head)


def case_chain_continues_after_a_restart(db: str) -> None:
    build_two_days(db)
    before = Tamper(db).rows()
    # Started at the ledger's own clock (a later one would be a move, recorded at start).
    e = Engine([settings()], db, parse_clock("manual:2025-02-14T09:00:00+08:00"))
    try:
        assert e.store.chain.seq == before[-1][0] and e.store.chain.head == before[-1][2]
        Blocking(e).set_clock(local_ms("2025-02-14 10:00"))
        assert Blocking(e).redeem(order(99, person="p-99"), "unionpay", "K99", "fp99").status == 201
        head = e.store.chain
    finally:
        e.close()
    after = Tamper(db).rows()
    assert after[: len(before)] == before and len(after) > len(before)
    assert (head.seq, head.head) == (after[-1][0], after[-1][2])
    rep = audit_db(db)
    assert rep.ok, rep.violations


def case_a_ledger_from_before_the_chain_is_chained_once(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    chained = t.rows()
    t.run("UPDATE entries SET chain = NULL")  # as a ledger written before the chain
    t.run("DELETE FROM chain_days")
    Engine([settings()], db, parse_clock("manual:2025-02-14T09:00:00+08:00")).close()
    assert t.rows() == chained  # the same chain, recomputed from the bodies
    assert len(t.run("SELECT * FROM chain_days")) == 2
    assert audit_db(db).ok


def case_a_partly_unchained_ledger_is_not_filled_in(db: str) -> None:
    build_two_days(db)
    t = Tamper(db)
    seq = t.first_hold_seq(2)
    t.run("UPDATE entries SET chain = NULL WHERE seq >= ?", (seq,))  # hiding a rewrite
    Engine([settings()], db, parse_clock("manual:2025-02-14T09:00:00+08:00")).close()
    rep = audit_db(db)
    assert broken_at(rep) == seq
    assert "stored none" in chain_problems(rep)[0]


CASES = [
    case_intact_chain_verifies,
    case_chain_continues_after_a_restart,
    case_edit_with_balances_fixed_up,
    case_edit_that_balances_never_see,
    case_one_byte_changed_in_place,
    case_delete,
    case_day_close_record_edited,
    case_insert_with_its_own_chain_right,
    case_reorder,
    case_rechained_suffix_still_differs_from_published_day_head,
    case_a_ledger_from_before_the_chain_is_chained_once,
    case_a_partly_unchained_ledger_is_not_filled_in,
]
