"""The one replay: entries of the log applied, in order, through ``Ledger.apply``.

What a restart does after its snapshot, what ``lijian audit`` checks, and what the
offline tools (settle, reconcile, evidence) read when they need the campaign as the log
made it. Balances are derived from the immutable entries by ``Ledger.apply`` and nothing
else, so this is the only arithmetic; every caller goes through here
(``lijian.stored_ledger`` for a ledger kept in a store), and ``tests/test_imports.py``
checks that no module outside ``lijian.core`` applies an entry itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lijian.core.entries import AnyEntry, decode
from lijian.core.ledger import Ledger
from lijian.core.settings import Settings

# Called after each entry is applied, with the ledger as that entry left it, the entry's
# seq and the entry (the audit compares the snapshot at its seq this way). An exception
# from it stops the replay.
EntryHook = Callable[[Ledger, int, AnyEntry], None]
# The log: encoded entries (numbered 1, 2, ... for the hook), or (seq, entry) pairs as a
# store's ``iter_entries`` gives them (seq values may have gaps on PostgreSQL).
Log = Iterable[bytes | tuple[int, AnyEntry]]


class ReplayFailed(Exception):
    """With a hook: the entry at ``seq`` could not be applied (``cause`` says why), so a
    start would stop there too. (Without one, apply's own exception goes up as it is.)"""

    def __init__(self, seq: int, cause: Exception) -> None:
        super().__init__(f"entry {seq}: {cause!r}")
        self.seq = seq
        self.cause = cause


def replay(
    start: Ledger | Iterable[Settings], log: Log, on_entry: EntryHook | None = None
) -> Ledger:
    """``start`` (a ledger, e.g. restored from a snapshot, or the settings of a fresh
    one) with every entry of ``log`` applied in order; returns that ledger."""
    led = start if isinstance(start, Ledger) else Ledger(list(start))
    apply = led.apply
    if on_entry is None:  # the restart's path: nothing per entry beyond apply
        for item in log:
            apply(item[1] if isinstance(item, tuple) else decode(item))
        return led
    for n, logged in enumerate(log, 1):
        if isinstance(logged, tuple):
            seq, entry = logged
        else:
            seq, entry = n, decode(logged)
        try:
            apply(entry)
        except Exception as exc:
            raise ReplayFailed(seq, exc) from exc
        on_entry(led, seq, entry)
    return led
