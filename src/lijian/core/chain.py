"""The ledger's hash chain: every stored entry carries the digest of all entries before it.

Definition (the contract an outside verifier re-implements)::

    chain(0)   = 32 zero bytes                              (before the first entry)
    chain(n)   = SHA-256(chain(n-1) || body(n))              (32 bytes)

``body(n)`` is the entry exactly as stored: its msgpack encoding
(:func:`lijian.core.entries.encode`, an array whose first item is the entry's tag), the
bytes in the ``body`` column of ``entries``. ``||`` is concatenation; ``n`` counts the
stored entries in ascending ``seq`` (seq values are only an order: PostgreSQL may leave
gaps, so they are not hashed). Heads are shown as 64 lower-case hex characters.

Why it proves anything: rewriting an entry changes its digest and every later one, so a
head someone kept from yesterday no longer matches. ``lijian audit`` recomputes the
chain from zero and names the first seq whose stored chain differs; balances fixed up to
match a rewritten entry do not help, the chain is over the entries themselves.

A day's *close* for a campaign is its ``TrancheClosed`` entry for that day: the head at
that seq is what ``/public/campaigns/{id}`` lists under ``days`` and what the day's
evidence bundle ends with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

GENESIS = bytes(32)
HEAD_HEX_CHARS = 64


def link(previous: bytes, body: bytes) -> bytes:
    """The chain after ``body``, given the chain before it."""
    return hashlib.sha256(previous + body).digest()


def link_all(previous: bytes, bodies: Iterable[bytes]) -> list[bytes]:
    """The chain after each of ``bodies`` in order (one per body)."""
    out: list[bytes] = []
    h = previous
    sha = hashlib.sha256
    for body in bodies:
        h = sha(h + body).digest()
        out.append(h)
    return out


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The chain after the entry at ``seq`` (seq 0: before any entry)."""

    seq: int
    head: bytes

    def view(self) -> dict[str, object]:
        return {"seq": self.seq, "head": self.head.hex()}


@dataclass(frozen=True, slots=True)
class DayClose:
    """The chain at a campaign's close of ``day`` (its TrancheClosed entry)."""

    campaign_id: str
    day: str
    seq: int
    head: bytes

    def view(self) -> dict[str, object]:
        return {"date": self.day, "seq": self.seq, "head": self.head.hex()}


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first stored entry whose chain is not the digest of what precedes it."""

    seq: int
    stored: bytes | None
    expected: bytes

    def describe(self) -> str:
        got = self.stored.hex() if self.stored is not None else "none"
        return (
            f"hash chain broken at seq {self.seq}: stored {got[:16]}…, "
            f"expected {self.expected.hex()[:16]}… (this entry or one before it was "
            "edited, deleted, inserted or moved)"
        )


def first_break(rows: Iterable[tuple[int, bytes, bytes | None]]) -> tuple[int, ChainBreak | None]:
    """Walk ``(seq, body, stored chain)`` in seq order from the first entry. Returns the
    number of entries read and the first break (None when the whole chain holds)."""
    h = GENESIS
    n = 0
    sha = hashlib.sha256
    for seq, body, stored in rows:
        n += 1
        h = sha(h + body).digest()
        if stored != h:
            return n, ChainBreak(seq, stored, h)
    return n, None


def heads(rows: Iterable[tuple[int, bytes]], previous: bytes = GENESIS) -> Iterator[ChainHead]:
    """The chain after each ``(seq, body)`` (used to backfill a store that predates it)."""
    h = previous
    for seq, body in rows:
        h = link(h, body)
        yield ChainHead(seq, h)


def parse_head(text: object) -> bytes | None:
    """A head as published (64 hex characters) back to bytes; None if it is not one."""
    if not isinstance(text, str) or len(text) != HEAD_HEX_CHARS:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def chain_view(head: ChainHead, closes: Iterable[DayClose], campaign_id: str) -> dict[str, object]:
    """The public feed's ``chain`` (after the last committed entry) and ``days`` (the
    head at each of the campaign's past day closes)."""
    return {
        "chain": head.view(),
        "days": [d.view() for d in closes if d.campaign_id == campaign_id],
    }
