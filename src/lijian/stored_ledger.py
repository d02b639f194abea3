"""A ledger rebuilt from its store: what every reader of a stored ledger goes through.

The engine's recovery, ``lijian audit``, ``settle``/``reconcile`` and ``evidence`` all
need the same two steps, so they take them here and nowhere else:

1. the campaigns' settings as stored beside the entries (:func:`stored_settings`),
   parsed once with one error policy: every campaign whose stored settings no longer
   parse is named in one :class:`StoredSettingsError`, and nothing is replayed;
2. the entries replayed through the one replay (``lijian.core.replay``), from the latest
   snapshot (a restart) or from zero (the tools, which must not trust a cache), with an
   optional per-entry hook (the audit compares the snapshot at its seq).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from lijian.core.entries import AnyEntry
from lijian.core.ledger import Ledger
from lijian.core.replay import EntryHook, replay
from lijian.core.settings import Settings, SettingsError, parse_settings
from lijian.core.snapshot import SnapshotMismatch, restore_snapshot
from lijian.ledger_file import LedgerFileError
from lijian.progress import counted

SETTINGS_PROBLEMS_SHOWN_MAX = 5  # per campaign, in the one-line message
REPLAY_LABEL = "replaying the ledger"


class LogSource(Protocol):
    """What a replay reads of a stored ledger: a ``Store``, or a standby's read-only
    ``lijian.store.pg_reader.LogReader``."""

    @property
    def last_seq(self) -> int: ...
    def campaigns(self) -> list[tuple[str, str]]: ...
    def latest_snapshot(self) -> tuple[int, bytes] | None: ...
    def iter_bodies(self, after_seq: int = 0) -> Iterator[bytes]: ...
    def iter_entries(self) -> Iterator[tuple[int, AnyEntry]]: ...


class StoredSettingsError(LedgerFileError):
    """The stored campaigns cannot be loaded: settings that no longer parse
    (``problems``: campaign id → its problems), or none stored where a ledger is
    replayed. One line, exit status 2."""

    def __init__(self, message: str, problems: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or {}


def stored_settings(store: LogSource) -> list[Settings]:
    """Every campaign's settings as stored, in the store's order (none: an empty list)."""
    settings: list[Settings] = []
    problems: dict[str, list[str]] = {}
    for cid, raw in store.campaigns():
        try:
            settings.append(parse_settings(json.loads(raw)))
        except SettingsError as exc:
            problems[cid] = [str(p) for p in exc.problems]
        except ValueError as exc:  # not JSON at all (json.JSONDecodeError)
            problems[cid] = [f"not JSON: {exc}"]
    if problems:
        shown = "; ".join(
            f"stored settings of {cid}: " + "; ".join(ps[:SETTINGS_PROBLEMS_SHOWN_MAX])
            for cid, ps in problems.items()
        )
        raise StoredSettingsError(shown, problems)
    return settings


def store_name(store: LogSource) -> str:
    from lijian.store import shown_db

    where = getattr(store, "path", None) or getattr(store, "url", None)
    return shown_db(str(where)) if where else "the database"


@dataclass
class StoredLedger:
    ledger: Ledger
    snapshot_seq: int  # the seq of the snapshot it started from; 0: replayed from zero
    replayed: int  # entries replayed after it


def open_stored_ledger(
    store: LogSource,
    settings: list[Settings] | None = None,
    *,
    node_id: str = "a",
    from_snapshot: bool = False,
    on_entry: EntryHook | None = None,
) -> StoredLedger:
    """The ledger of ``store``: a fresh ``Ledger`` for ``settings`` (default: the stored
    ones), the latest snapshot restored if ``from_snapshot``, then every later entry.

    A snapshot that no longer fits the campaigns (they changed shape since) is skipped:
    the entries still hold everything, so the replay starts from zero instead.
    """
    assert not (from_snapshot and on_entry), "a hook sees every entry: replay from zero"
    if settings is None:
        settings = stored_settings(store)
    if not settings:
        raise StoredSettingsError(f"{store_name(store)} holds no campaign")
    ledger = Ledger(settings, node_id=node_id)
    after = 0
    snap = store.latest_snapshot() if from_snapshot else None
    if snap is not None:
        try:
            after = restore_snapshot(ledger, snap[1])
        except SnapshotMismatch:
            ledger = Ledger(settings, node_id=node_id)
    before = ledger.entries_applied
    # A bar on the terminal for the commands that opened one (lijian.progress); none
    # for a start, which logs instead.
    total = max(0, store.last_seq - after)
    if on_entry is None:
        replay(ledger, counted(store.iter_bodies(after), total, REPLAY_LABEL))
    else:
        replay(ledger, counted(store.iter_entries(), total, REPLAY_LABEL), on_entry)
    return StoredLedger(ledger, after, ledger.entries_applied - before)
