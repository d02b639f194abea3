"""Who may log in to the dashboard, and how a password is checked.

Two sources; ``lijian serve`` uses the first only (the clients file it loads refuses a
``[[users]]`` section, and docs/DASHBOARD.md documents only client logins):

1. Every ``[[clients]]`` entry whose role is ``operator`` or ``auditor`` logs in with its
   ``key_id`` as the user name and its ``secret`` as the password. Nothing to configure;
   it suits a rehearsal or a small team.
2. ``[[users]]`` entries, for people rather than programs::

       [[users]]
       username = "chen.li"
       role = "operator"                     # operator | auditor
       password_hash = "pbkdf2_sha256$600000$<salt b64>$<hash b64>"
       # password = "plain text"             # instead of password_hash, rehearsals only

   ``python -m lijian.dashboard`` prints a hash for a password typed at the
   prompt. A user name may not repeat a client's key id.

Both roles see the same read-only dashboard; the role is shown, nothing on the page
changes state. Password checks cost about 0.2 s of CPU on purpose (PBKDF2), so callers
run them off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from lijian.http.clients import Client

DASHBOARD_ROLES: Final = ("operator", "auditor")
USERS_MAX = 1_000
USERNAME_LEN_MAX = 64
PASSWORD_LEN_MAX = 1_024  # bounds the hashing work one request can ask for
PASSWORD_LEN_MIN = 8
PBKDF2_ITERATIONS = 600_000  # OWASP 2023 figure for PBKDF2-HMAC-SHA256
PBKDF2_ITERATIONS_MIN = 100_000
PBKDF2_ITERATIONS_MAX = 10_000_000
HASH_SCHEME = "pbkdf2_sha256"
SALT_BYTES = 16


class AccountsError(ValueError):
    """The ``[[users]]`` section is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str  # "operator" | "auditor"
    source: str  # "client" (key id + secret) | "user" ([[users]])
    secret: bytes | None = None  # a client's secret or a plain-text user password
    password_hash: str | None = None

    def __repr__(self) -> str:  # never print a secret or a hash
        return f"Account({self.username!r}, role={self.role!r}, source={self.source!r})"


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{HASH_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def _parse_hash(text: str) -> tuple[int, bytes, bytes] | None:
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != HASH_SCHEME or not parts[1].isdigit():
        return None
    iterations = int(parts[1])
    if not PBKDF2_ITERATIONS_MIN <= iterations <= PBKDF2_ITERATIONS_MAX:
        return None
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except ValueError:
        return None
    if len(salt) < 8 or len(digest) != 32:
        return None
    return iterations, salt, digest


# Hashed when there is no hash to check, so every answer costs the same; it matches no
# password (an all-zero digest is not PBKDF2 output) and "known" is False anyway.
_DUMMY = (PBKDF2_ITERATIONS, bytes(16), bytes(32))


def check_password(account: Account | None, password: str) -> bool:
    """True when ``password`` is the account's. CPU-heavy: call it off the event loop."""
    if len(password) > PASSWORD_LEN_MAX:
        return False
    given = password.encode()
    parsed = _parse_hash(account.password_hash if account and account.password_hash else "")
    known = parsed is not None
    if parsed is None:
        # Unknown name, or a secret compared below: hash anyway so every answer costs the
        # same time (no user enumeration by timing).
        parsed = _DUMMY
    iterations, salt, digest = parsed
    got = hashlib.pbkdf2_hmac("sha256", given, salt, iterations)
    if account is not None and account.secret is not None:
        return hmac.compare_digest(given, account.secret)
    return hmac.compare_digest(got, digest) and known


def accounts_from_clients(clients: Iterable[Client]) -> dict[str, Account]:
    """Operator and auditor API clients as accounts."""
    out: dict[str, Account] = {}
    for c in clients:
        if c.role in DASHBOARD_ROLES:
            out[c.key_id] = Account(c.key_id, c.role, "client", secret=bytes(c.secret))
    return out


def parse_users(doc: Mapping[str, object], taken: Iterable[str] = ()) -> dict[str, Account]:
    """The ``[[users]]`` of a clients TOML document; raises AccountsError with every problem."""
    rows = doc.get("users", [])
    problems: list[str] = []
    if not isinstance(rows, list):
        raise AccountsError(["users: must be an array of tables ([[users]])"])
    if len(rows) > USERS_MAX:
        problems.append(f"users: at most {USERS_MAX} entries")
    taken = set(taken)
    out: dict[str, Account] = {}
    for i, row in enumerate(rows[:USERS_MAX]):
        where = f"users[{i}]"
        if not isinstance(row, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        acc = _user(row, where, problems)
        if acc is None:
            continue
        if acc.username in out or acc.username in taken:
            problems.append(f"{where}.username: {acc.username!r} is already taken")
            continue
        out[acc.username] = acc
    if problems:
        raise AccountsError(problems)
    return out


def _user(row: Mapping[str, object], where: str, problems: list[str]) -> Account | None:
    n = len(problems)
    allowed = {"username", "role", "password_hash", "password"}
    if set(row) - allowed:
        problems.append(f"{where}: unknown keys {sorted(set(row) - allowed)}")
    name, role = row.get("username"), row.get("role")
    pw_hash, pw = row.get("password_hash"), row.get("password")
    if not isinstance(name, str) or not 1 <= len(name) <= USERNAME_LEN_MAX:
        problems.append(f"{where}.username: a string of 1-{USERNAME_LEN_MAX} characters")
    elif not name.isprintable() or name != name.strip():
        problems.append(f"{where}.username: printable, without leading or trailing spaces")
    if role not in DASHBOARD_ROLES:
        problems.append(f"{where}.role: one of {', '.join(DASHBOARD_ROLES)}, got {role!r}")
    if (pw_hash is None) == (pw is None):
        problems.append(f"{where}: give exactly one of password_hash and password")
    elif pw_hash is not None and (not isinstance(pw_hash, str) or _parse_hash(pw_hash) is None):
        problems.append(
            f"{where}.password_hash: expected {HASH_SCHEME}$<iterations>$<salt>$<hash> "
            "(python -m lijian.dashboard prints one)"
        )
    elif pw is not None and (
        not isinstance(pw, str) or not PASSWORD_LEN_MIN <= len(pw) <= PASSWORD_LEN_MAX
    ):
        problems.append(f"{where}.password: {PASSWORD_LEN_MIN}-{PASSWORD_LEN_MAX} characters")
    if len(problems) > n:
        return None
    assert isinstance(name, str) and isinstance(role, str)
    if pw_hash is not None:
        return Account(name, role, "user", password_hash=str(pw_hash))
    return Account(name, role, "user", secret=str(pw).encode())


def main() -> int:
    """Print a ``password_hash`` for a ``[[users]]`` entry (the password is prompted)."""
    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if not PASSWORD_LEN_MIN <= len(pw) <= PASSWORD_LEN_MAX:
        print(f"a password has {PASSWORD_LEN_MIN}-{PASSWORD_LEN_MAX} characters", file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0
