"""A small two-day ledger on a real store, and ways to tamper with it as an insider would.

``build_two_days(db)`` runs the engine (manual clock) through 2025-02-12 and 2025-02-13:
grants, captures, a void, a partial refund, and both days' closes. ``Tamper`` then edits
the stored rows directly with SQL, as someone with write access to the database would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.entries import HoldPlaced, decode, encode
from lijian.core.invariants import balances
from lijian.core.order import RefundRequest
from lijian.core.replay import replay
from lijian.core.schedule import to_ms
from lijian.engine import Engine
from tests.support import TZ, catalog, order, settings

DAY1, DAY2 = "2025-02-12", "2025-02-13"


def local_ms(text: str) -> int:
    import datetime as dt

    return to_ms(dt.datetime.fromisoformat(text).replace(tzinfo=TZ))


@dataclass
class TwoDays:
    db: str
    day1_captured: list[str]
    day2_captured: list[str]
    refunded: str


def build_two_days(db: str | Path, **settings_kw: Any) -> TwoDays:
    e = Engine([settings(**settings_kw)], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        day1 = []
        for n in range(1, 5):
            out = Blocking(e).redeem(order(n, person=f"p-{n}"), "unionpay", f"K{n}", f"fp{n}")
            assert out.status == 201, out.body
            day1.append(out.body["id"])
        for rid in day1[:3]:
            assert Blocking(e).capture(rid).status == 200
        assert Blocking(e).void(day1[3]).status == 200
        refund = Blocking(e).refund(
            day1[0], RefundRequest("rf-1", payable_fen=2_000), "unionpay", "KR1", "fpr1"
        )
        assert refund.status == 201, refund.body
        Blocking(e).set_clock(local_ms("2025-02-13 10:00"))
        day2 = []
        for n in range(11, 13):
            out = Blocking(e).redeem(order(n, person=f"p-{n}"), "unionpay", f"K{n}", f"fp{n}")
            assert out.status == 201, out.body
            assert Blocking(e).capture(out.body["id"]).status == 200
            day2.append(out.body["id"])
        Blocking(e).set_clock(local_ms("2025-02-14 09:00"))  # closes 2025-02-13
    finally:
        e.close()
    return TwoDays(str(db), day1[:3], day2, day1[0])


class Tamper:
    """Direct SQL on a SQLite file or a PostgreSQL schema (``run(sql, params)``)."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.pg = db.startswith("postgresql://")
        self.p = "%s" if self.pg else "?"

    def run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        sql = sql.replace("?", self.p)
        if self.pg:
            from tests.postgres.pgutil import execute

            return execute(self.db, sql, params)
        with sqlite3.connect(self.db) as c:
            return c.execute(sql, params).fetchall()

    def rows(self) -> list[tuple[int, bytes, bytes]]:
        got = self.run("SELECT seq, body, chain FROM entries ORDER BY seq")
        return [(int(s), bytes(b), bytes(c)) for s, b, c in got]

    def first_hold_seq(self, nth: int = 0) -> int:
        holds = [s for s, b, _ in self.rows() if isinstance(decode(b), HoldPlaced)]
        return holds[nth]

    def rewrite_body(self, seq: int, change: Callable[[Any], Any]) -> None:
        body = dict((s, b) for s, b, _ in self.rows())[seq]
        new = encode(change(decode(body)))
        self.run("UPDATE entries SET body = ? WHERE seq = ?", (new, seq))

    def fix_up_balances(self, settings_list: list[Any]) -> None:
        """Make every stored figure agree with a replay of the (tampered) log, and drop
        the snapshot: what a careful forger does so that a replay-and-compare passes."""
        led = replay(settings_list, [b for _, b, _ in self.rows()])
        for key, value in balances(led).items():
            self.run("UPDATE balances SET value = ? WHERE key = ?", (value, key))
        (seq,) = self.run("SELECT MAX(seq) FROM entries")[0]
        self.run("DELETE FROM persons")
        for cid, b in led.books.items():
            for pid, p in b.persons.items():
                self.run(
                    "INSERT INTO persons (campaign_id, person_id, used_fen, held_fen, seq)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (cid, pid, p.used_fen, p.held_fen, seq),
                )
        self.run("DELETE FROM snapshots")

    def delete(self, seq: int) -> None:
        self.run("DELETE FROM entries WHERE seq = ?", (seq,))

    def swap(self, a: int, b: int) -> None:
        """Exchange two rows' bodies and chains (the rows move, each with its own chain)."""
        rows = {s: (body, ch) for s, body, ch in self.rows()}
        for s, (body, ch) in ((a, rows[b]), (b, rows[a])):
            self.run("UPDATE entries SET body = ?, chain = ? WHERE seq = ?", (body, ch, s))

    def insert_after(self, seq: int, body: bytes, chain: bytes) -> None:
        """Make room after ``seq`` (every later row moves up one) and put a row there."""
        shift = 1_000_000_000
        self.run("UPDATE entries SET seq = seq + ? WHERE seq > ?", (shift, seq))
        self.run("UPDATE entries SET seq = seq - ? + 1 WHERE seq > ?", (shift, shift))
        if self.pg:
            self.run("INSERT INTO entries (seq, node_id, body, chain) VALUES (?, 'a', ?, ?)",
                     (seq + 1, body, chain))  # fmt: skip
        else:
            self.run(
                "INSERT INTO entries (seq, body, chain) VALUES (?, ?, ?)", (seq + 1, body, chain)
            )


def other_person(e: Any) -> Any:
    return msgspec.structs.replace(e, person_id="p-forged")


def more_payable(e: Any) -> Any:
    return msgspec.structs.replace(e, payable_fen=e.payable_fen + 10_000)
