"""The ledger key: where it lives, how it is made, and the check that a ledger is opened
with the key it was started with.

What it is for (lijian.core.keyed, lijian.core.draw): the engine keys every identifier of
an order (``device_id``, ``card_hash``, ``phone_hash``) with it before anything stores
them, and derives each day's draw seed from it. It must therefore never be in the ledger,
and a ledger must always be opened with the same key: another key would key a value
differently (splitting every group) and give other seeds than the commitments promise.

Where it lives: a file of 64 hex characters (32 random bytes), mode 0600, like the
evidence key (lijian.evidence.keys) never overwritten.

- ``--ledger-key FILE`` (``serve``, ``sequencer``, ``sandbox``, ``demo``) or the
  environment variable ``LIJIAN_LEDGER_KEY_FILE`` names it;
- otherwise a SQLite ledger's key is ``<ledger file>.key`` beside it;
- a PostgreSQL ledger has no file beside it: the key file must be named.

A named file that does not exist is created (the first start of a ledger). Only the one
writer (the process that runs the engine) reads it; gateways need no key.

The ledger holds the key's id (``LedgerKeyed``, an HMAC of a constant under the key). A
start with a key whose id differs is refused (``LedgerKeyError``: one line, exit 2).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from lijian.core.entries import LedgerKeyed, decode, encode
from lijian.core.keyed import KEY_BYTES, key_id
from lijian.store import Store, is_postgres_url

ENV_KEY_FILE = "LIJIAN_LEDGER_KEY_FILE"
KEY_SUFFIX = ".key"
MAX_KEY_FILE_BYTES = 1_024  # 64 hex characters and a newline; refuse to read anything big
# The first bytes of every stored LedgerKeyed entry (its msgpack array and tag): a scan
# for it decodes nothing else.
_KEYED_PREFIX = encode(LedgerKeyed(0, ""))[:5]


class LedgerKeyError(ValueError):
    """The ledger key cannot be had or is not the ledger's: one line for the operator."""


def key_file_for(db: str | Path, key_file: str | Path | None = None) -> Path:
    """The key file of a ledger: the one named, else ``LIJIAN_LEDGER_KEY_FILE``, else
    beside a SQLite file (``LedgerKeyError`` for PostgreSQL without one named)."""
    named = key_file or os.environ.get(ENV_KEY_FILE)
    if named:
        return Path(named)
    if is_postgres_url(db):
        raise LedgerKeyError(
            "a PostgreSQL ledger needs its key file: --ledger-key FILE or "
            f"{ENV_KEY_FILE}=FILE (the same file for every sequencer of the ledger)"
        )
    return Path(str(db) + KEY_SUFFIX)


def load_or_create(path: Path) -> bytes:
    """The key in ``path``; a new random key written there (0600) if there is none.
    Two processes that start together end up with the same key: the file appears whole
    (written aside, then linked into place, which fails if it exists already)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return read_key(path)


def read_key(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise LedgerKeyError(f"cannot read the ledger key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LedgerKeyError(f"the ledger key {path} is readable by others: chmod 600 it")
    text = data.decode("ascii", "replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(data) > MAX_KEY_FILE_BYTES or len(key) != KEY_BYTES:
        raise LedgerKeyError(f"{path} is not a ledger key (64 hex characters)")
    return key


def resolve(db: str | Path, key_file: str | Path | None = None) -> bytes:
    """The key of the ledger ``db`` (created on its first start)."""
    return load_or_create(key_file_for(db, key_file))


def mismatch(stored_id: str | None, key: bytes, where: Path | str) -> str | None:
    """The one line refusing a start with another key than the ledger's, or None."""
    if stored_id is None or stored_id == key_id(key):
        return None
    return (
        f"the ledger was started with another key than {where} (key id "
        f"{stored_id[:16]}…, this key {key_id(key)[:16]}…): start it with its own key"
    )


def stored_key_id(bodies: Iterable[bytes]) -> str | None:
    """The key id a ledger's entries record (the first ``LedgerKeyed``), or None."""
    for body in bodies:
        if bytes(body[:5]) == _KEYED_PREFIX:
            e = decode(bytes(body))
            if isinstance(e, LedgerKeyed):
                return e.key_id
    return None


def ledger_key_id(store: Store) -> str | None:
    """The key id a stored ledger records: its ``LedgerKeyed`` entry, looked for by the
    database. A ledger records its key once (``Ledger.bind_key``) and its log keeps every
    entry, so this is also the id its snapshot carries; reading that instead cost every
    start 6.4 s at a million redemptions (the whole snapshot read and parsed for one
    field, and for nothing when the ledger was never keyed)."""
    body = store.first_body_with_prefix(_KEYED_PREFIX)
    return None if body is None else stored_key_id([body])


def preflight(db: str, key_file: str | Path | None = None) -> None:
    """Before any process starts: the key can be had and is the ledger's (else
    ``LedgerKeyError``, one line). The engine checks it again after its recovery."""
    from lijian.store import open_store

    path = key_file_for(db, key_file)
    key = load_or_create(path)
    if not is_postgres_url(db) and not Path(db).exists():
        return  # a new ledger: nothing to compare with
    try:
        store = open_store(db)
    except Exception:  # unreachable, say: the start reports that its own way
        return
    try:
        problem = mismatch(ledger_key_id(store), key, path)
    finally:
        store.close()
    if problem:
        raise LedgerKeyError(problem)
