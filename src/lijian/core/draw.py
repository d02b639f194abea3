"""The draw of an admission window: a committed seed and the order it gives.

Why: when a tranche opens at 10:00:00, first come, first served rewards whoever is
fastest (a bot at 10:00:00.001 beats a person at 10:00:00.300). With an admission window
of N seconds every redemption that arrives in the first N seconds is decided together
when the window ends, in an order nobody can influence or predict, and everyone can
check afterwards:

- a ``seed`` (32 bytes, 64 lower-case hex characters) is derived from the ledger key,
  which is not in the ledger: ``hex(HMAC-SHA256(key, "draw seed\n" campaign_id "\n"
  date))``. Only its commitment, ``hex(SHA-256(seed as ASCII))``, is stored before the
  open (``DrawCommitted``); the seed is stored when the window has ended
  (``DrawRevealed``, checked against the commitment). The public feed shows the
  commitment, then the seed;
- the window's requests are decided in rounds: each person's 1st request of the window,
  then each person's 2nd, …; within a round by ascending ``draw_key`` (below), where the
  person key is the person's id, or with identity linking the id of the first person of
  its linked group.

This module is pure (hashlib and hmac only): the ledger, the audit, the simulator and the
tests all compute the order with these same functions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

SEED_HEX_LEN = 64
_SEED_RE = re.compile(r"^[0-9a-f]{64}$")
# A window decides at most this many requests (the engine refuses more with 503): the
# decision is one batch of the writer, so its size must stay bounded.
WINDOW_REQUESTS_MAX = 100_000


def is_seed(seed_hex: str) -> bool:
    """64 lower-case hex characters (32 bytes)."""
    return _SEED_RE.match(seed_hex) is not None


def derive_seed(key: bytes, campaign_id: str, day: str) -> str:
    """The draw seed of a campaign's day: hex(HMAC-SHA256(key, "draw seed\n" campaign_id
    "\n" date)). Nobody without the key can compute it before its reveal; the engine
    computes it again after any restart, so it needs to be stored nowhere."""
    msg = f"draw seed\n{campaign_id}\n{day}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def commitment(seed_hex: str) -> str:
    """What the public feed shows before the window: hex(SHA-256(seed as ASCII))."""
    assert is_seed(seed_hex), "a seed is 64 lower-case hex characters"
    return hashlib.sha256(seed_hex.encode("ascii")).hexdigest()


def draw_key(seed_hex: str, campaign_id: str, day: str, person_key: str, round_no: int) -> str:
    """hex(HMAC-SHA256(key = seed as ASCII, msg = campaign_id\\n date\\n person_key\\n round)).

    ``day`` is the tranche's date (``YYYY-MM-DD``), ``round_no`` 1, 2, … as decimal text;
    the message is UTF-8."""
    msg = f"{campaign_id}\n{day}\n{person_key}\n{round_no}".encode()
    return hmac.new(seed_hex.encode("ascii"), msg, hashlib.sha256).hexdigest()


def rounds(person_keys: Sequence[str]) -> list[int]:
    """The round of each arrival: 1 for a person's first request of the window, 2 for its
    second, … (arrivals are given in arrival order)."""
    seen: dict[str, int] = {}
    out: list[int] = []
    for k in person_keys:
        n = seen.get(k, 0) + 1
        seen[k] = n
        out.append(n)
    return out


def draw_order(seed_hex: str, campaign_id: str, day: str, person_keys: Sequence[str]) -> list[int]:
    """Indices of the arrivals (given in arrival order) in the order they are decided.

    By (round, draw key); two arrivals of one round never share a person key, so the
    arrival index only breaks ties between equal keys, which SHA-256 does not produce."""
    assert len(person_keys) <= WINDOW_REQUESTS_MAX
    rs = rounds(person_keys)
    keyed = [
        (r, draw_key(seed_hex, campaign_id, day, k, r), i)
        for i, (k, r) in enumerate(zip(person_keys, rs, strict=True))
    ]
    keyed.sort()
    return [i for _, _, i in keyed]


def out_of_order(expected: Sequence[str], granted: Sequence[str]) -> list[str]:
    """Problems if ``granted`` (request ids in the order they were granted) is not a
    subsequence of ``expected`` (every request id of the window in draw order): a grant
    that came before one drawn earlier, or a grant that was not in the window."""
    position = {rid: i for i, rid in enumerate(expected)}
    problems: list[str] = []
    last = -1
    for rid in granted:
        at = position.get(rid)
        if at is None:
            problems.append(f"{rid} was granted in the window's decision but did not arrive in it")
            continue
        if at < last:
            problems.append(f"{rid} was granted out of the draw's order (drawn {at + 1})")
        last = max(last, at)
    return problems
