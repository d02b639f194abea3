"""API clients from the ``--clients`` TOML file: key id, secret, role, rate limit.

The file is the contract's (docs/API.md, "Authentication"); this module adds two optional
keys, ``requests_per_s`` and ``burst`` (per client, or as defaults in a top-level
``[rate_limit]`` table). A bad file is refused at start-up with every problem listed,
like a bad campaign file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROLES: Final = ("channel", "platform", "operator", "auditor")
KEY_ID_LEN_MAX = 64
SECRET_LEN_MIN = 8  # anything shorter is a placeholder, not a secret
SECRET_LEN_MAX = 1024
CLIENTS_MAX = 1_000  # every client has a nonce memory and a bucket: bound them
# Default rate limit: above what one serving process grants (measured ~10k/s), so it
# only stops one client from starving the others; operators tighten it per client.
REQUESTS_PER_S_DEFAULT = 20_000.0
BURST_DEFAULT = 40_000.0


class ClientsError(ValueError):
    """The clients file is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Client:
    key_id: str
    secret: bytes
    role: str
    platform: str | None = None  # only for role "platform": the one platform it speaks for
    requests_per_s: float = REQUESTS_PER_S_DEFAULT
    burst: float = BURST_DEFAULT

    def __repr__(self) -> str:  # never print the secret
        return f"Client({self.key_id!r}, role={self.role!r}, platform={self.platform!r})"


def load_clients(path: str | Path) -> dict[str, Client]:
    """Read and validate a clients TOML file; raises ClientsError with every problem."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ClientsError([f"{path}: not valid TOML: {exc}"]) from exc
    except OSError as exc:
        raise ClientsError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_clients(doc)


def _rate(
    table: Mapping[str, object], where: str, problems: list[str], rps: float, burst: float
) -> tuple[float, float]:
    out = []
    for key, default in (("requests_per_s", rps), ("burst", burst)):
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            problems.append(f"{where}.{key}: must be a positive number, got {v!r}")
            v = default
        out.append(float(v))
    return out[0], out[1]


def parse_clients(doc: Mapping[str, object]) -> dict[str, Client]:
    problems: list[str] = []
    unknown = set(doc) - {"clients", "rate_limit", "webhooks"}
    if unknown:
        problems.append(f"unknown top-level keys: {sorted(unknown)}")
    from lijian.events.receivers import webhook_problems

    problems += webhook_problems(doc.get("webhooks"))  # docs/API.md "Webhooks"
    defaults = doc.get("rate_limit", {})
    if not isinstance(defaults, Mapping):
        problems.append("rate_limit: must be a table")
        defaults = {}
    rps0, burst0 = _rate(defaults, "rate_limit", problems, REQUESTS_PER_S_DEFAULT, BURST_DEFAULT)
    rows = doc.get("clients")
    if not isinstance(rows, list) or not rows:
        raise ClientsError([*problems, "clients: at least one [[clients]] entry is required"])
    if len(rows) > CLIENTS_MAX:
        problems.append(f"clients: at most {CLIENTS_MAX} entries")
    out: dict[str, Client] = {}
    for i, row in enumerate(rows[:CLIENTS_MAX]):
        where = f"clients[{i}]"
        if not isinstance(row, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        client = _client(row, where, problems, rps0, burst0)
        if client is None:
            continue
        if client.key_id in out:
            problems.append(f"{where}.key_id: {client.key_id!r} appears twice")
        out[client.key_id] = client
    if problems:
        raise ClientsError(problems)
    return out


def _client(
    row: Mapping[str, object], where: str, problems: list[str], rps0: float, burst0: float
) -> Client | None:
    n = len(problems)
    allowed = {"key_id", "secret", "role", "platform", "requests_per_s", "burst"}
    if set(row) - allowed:
        problems.append(f"{where}: unknown keys {sorted(set(row) - allowed)}")
    key_id, secret, role = row.get("key_id"), row.get("secret"), row.get("role")
    platform = row.get("platform")
    if not isinstance(key_id, str) or not 1 <= len(key_id) <= KEY_ID_LEN_MAX:
        problems.append(f"{where}.key_id: a string of 1-{KEY_ID_LEN_MAX} characters is required")
    elif not key_id.isascii() or not key_id.isprintable() or " " in key_id:
        problems.append(f"{where}.key_id: printable ASCII without spaces (it travels in a header)")
    if not isinstance(secret, str) or not SECRET_LEN_MIN <= len(secret) <= SECRET_LEN_MAX:
        problems.append(f"{where}.secret: a string of {SECRET_LEN_MIN}-{SECRET_LEN_MAX} chars")
    if role not in ROLES:
        problems.append(f"{where}.role: one of {', '.join(ROLES)}, got {role!r}")
    if role == "platform" and not (isinstance(platform, str) and platform):
        problems.append(f"{where}.platform: a platform client needs its platform id")
    if role != "platform" and platform is not None:
        problems.append(f"{where}.platform: only a platform client is bound to a platform")
    rps, burst = _rate(row, where, problems, rps0, burst0)
    if len(problems) > n:
        return None
    assert isinstance(key_id, str) and isinstance(secret, str) and isinstance(role, str)
    assert platform is None or isinstance(platform, str)  # checked above
    return Client(key_id, secret.encode(), role, platform, rps, burst)
