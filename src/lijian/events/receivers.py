"""The ``[[webhooks]]`` receivers of the clients file (docs/API.md "Webhooks")::

    [[webhooks]]
    url = "https://bureau.example/lijian-events"
    secret = "change-me-hook"
    events = ["tranche.threshold", "tranche.sold_out", "budget.threshold"]
    backoff_max_s = 30          # optional: the longest wait between two attempts

``events`` defaults to every type. Each receiver has its own cursor, named by its URL.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lijian.events.model import ALL_TYPES

RECEIVERS_MAX = 16
URL_LEN_MAX = 2_048
SECRET_LEN_MIN = 8
SECRET_LEN_MAX = 256
SIGNING_KEY_ID = "lijian"  # X-Lijian-Key on every delivery (docs/API.md)
BACKOFF_MAX_S_DEFAULT = 30.0
BACKOFF_MAX_S_RANGE = (0.1, 3_600.0)


@dataclass(frozen=True, slots=True)
class Receiver:
    url: str
    secret: bytes
    events: frozenset[str]
    backoff_max_s: float = BACKOFF_MAX_S_DEFAULT

    @property
    def path_with_query(self) -> str:
        u = urlsplit(self.url)
        return (u.path or "/") + (f"?{u.query}" if u.query else "")

    def __repr__(self) -> str:  # never print the secret
        return f"Receiver({self.url!r}, events={sorted(self.events)})"


def webhook_problems(rows: object) -> list[str]:
    """Every problem of a ``webhooks`` value (empty when it is fine or absent)."""
    return parse_receivers(rows)[1]


def parse_receivers(rows: object) -> tuple[list[Receiver], list[str]]:
    """The receivers of a ``webhooks`` value (as read from TOML), and its problems."""
    if rows is None:
        return [], []
    if not isinstance(rows, list):
        return [], ["webhooks: must be an array of tables ([[webhooks]])"]
    problems: list[str] = []
    if len(rows) > RECEIVERS_MAX:
        problems.append(f"webhooks: at most {RECEIVERS_MAX} receivers")
    out: list[Receiver] = []
    for i, row in enumerate(rows[:RECEIVERS_MAX]):
        where = f"webhooks[{i}]"
        if not isinstance(row, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        n = len(problems)
        extra = set(row) - {"url", "secret", "events", "backoff_max_s"}
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        url, secret = row.get("url"), row.get("secret")
        events = row.get("events", list(ALL_TYPES))
        if not isinstance(url, str) or len(url) > URL_LEN_MAX:
            problems.append(f"{where}.url: a URL is required")
        else:
            u = urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                problems.append(f"{where}.url: must be an http:// or https:// URL")
        if not isinstance(secret, str) or not SECRET_LEN_MIN <= len(secret) <= SECRET_LEN_MAX:
            problems.append(f"{where}.secret: a string of {SECRET_LEN_MIN}-{SECRET_LEN_MAX} chars")
        if not isinstance(events, list) or not events or any(e not in ALL_TYPES for e in events):
            problems.append(f"{where}.events: a non-empty list of {', '.join(ALL_TYPES)}")
        cap = row.get("backoff_max_s", BACKOFF_MAX_S_DEFAULT)
        lo, hi = BACKOFF_MAX_S_RANGE
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not lo <= cap <= hi:
            problems.append(f"{where}.backoff_max_s: a number of seconds in {lo}..{hi}")
        if any(r.url == url for r in out):
            problems.append(f"{where}.url: {url!r} appears twice")
        if len(problems) == n:
            assert isinstance(url, str) and isinstance(secret, str) and isinstance(events, list)
            out.append(Receiver(url, secret.encode(), frozenset(events), float(cap)))
    return out, problems


def load_receivers(path: str | Path) -> list[Receiver]:
    """The receivers of a clients file (already validated by the clients loader)."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    receivers, problems = parse_receivers(doc.get("webhooks"))
    if problems:
        raise ValueError("; ".join(problems))
    return receivers
