"""The engine's recovery at start-up: its ledger rebuilt from the store, checked, and
the catalogue it indexes in memory reloaded.

Apart from :class:`lijian.engine.Engine` because it runs once, before the writer
exists, and touches only the store, the settings and the catalogue it is given.

Two ways to the same ledger, both through the one replay (``lijian.core.replay``):

- :func:`rebuild`: the newest snapshot, then every entry after it (a start);
- a *warm start* (:class:`WarmStart`, a standby's ``cluster/follower.py``): a ledger
  rebuilt the same way while the standby waited for the lease and kept up with the log
  since, which, now that the lease is held, replays the entries it has not seen yet.
  It answers None when it cannot (it met an entry it could not apply, the database
  failed under it): the start then rebuilds as any start does.
"""

from __future__ import annotations

import gc
from typing import Protocol

from lijian.catalog import Catalog
from lijian.core.invariants import check_invariants
from lijian.core.settings import Settings
from lijian.gc_tuning import tune_gc
from lijian.store import Store
from lijian.stored_ledger import LogSource, StoredLedger, open_stored_ledger


class WarmStart(Protocol):
    def caught_up(self, store: Store) -> StoredLedger | None:
        """The ledger with every entry of ``store`` applied (its lease is held, so
        nothing is committed after what this reads), or None: rebuild instead."""
        ...


def recover(
    store: Store,
    settings: list[Settings],
    node_id: str,
    catalog: Catalog,
    warm: WarmStart | None = None,
) -> StoredLedger:
    """Rebuild state from the store: the latest snapshot, then replay every later entry
    through ``Ledger.apply`` (``replayed`` of the answer counts them), or ``warm``'s
    ledger and the entries it had not seen; ``catalog`` gets the stored rows and
    reference prices."""
    rec = warm.caught_up(store) if warm is not None else None
    if rec is None:
        rec = rebuild(store, settings, node_id)
    # A warm ledger is not checked again here: ``rebuild`` checked it where a start
    # checks, once its snapshot was decoded and the log after it replayed, and every
    # entry since came through ``Ledger.apply``, as every entry of a serving writer does
    # (3.6 s of the engine's 3.7 s start at a million redemptions, measured on a busy
    # machine, where the tail took 0.01 s). The periodic audit
    # (events/audits.py) checks the invariants of the ledger being served, as always.
    catalog.upsert(store.catalog_rows())
    catalog.set_reference_prices(store.reference_prices())
    return rec


def rebuild(source: LogSource, settings: list[Settings], node_id: str) -> StoredLedger:
    """The ledger of ``source``: its newest snapshot and the entries after it, checked."""
    # Recovery creates every object the ledger will hold; the cycle collector would
    # walk them again and again while they are being built. It stays off until
    # tune_gc freezes what was built (also on failure: the finally below).
    gc.disable()
    try:
        rec = open_stored_ledger(source, settings, node_id=node_id, from_snapshot=True)
    finally:
        tune_gc()
    check_recovered(rec)
    return rec


def check_recovered(rec: StoredLedger) -> None:
    """A ledger that fails its own invariants must not be served: stop before the writer."""
    problems = check_invariants(rec.ledger)
    if problems:
        raise AssertionError("ledger invariants fail after recovery: " + "; ".join(problems))
