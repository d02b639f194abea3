"""The engine's recovery at start-up: its ledger rebuilt from the store, checked, and
the catalogue it indexes in memory reloaded.

Apart from :class:`lijian.engine.Engine` because it runs once, before the writer
exists, and touches only the store, the settings and the catalogue it is given.
"""

from __future__ import annotations

import gc

from lijian.catalog import Catalog
from lijian.core.invariants import check_invariants
from lijian.core.settings import Settings
from lijian.gc_tuning import tune_gc
from lijian.store import Store
from lijian.stored_ledger import StoredLedger, open_stored_ledger


def recover(store: Store, settings: list[Settings], node_id: str, catalog: Catalog) -> StoredLedger:
    """Rebuild state from the store: the latest snapshot, then replay every later entry
    through ``Ledger.apply`` (``replayed`` of the answer counts them); ``catalog`` gets
    the stored rows and reference prices."""
    # Recovery creates every object the ledger will hold; the cycle collector would
    # walk them again and again while they are being built. It stays off until
    # tune_gc freezes what was built (also on failure: the finally below).
    gc.disable()
    try:
        return _recover_state(store, settings, node_id, catalog)
    finally:
        tune_gc()


def _recover_state(
    store: Store, settings: list[Settings], node_id: str, catalog: Catalog
) -> StoredLedger:
    rec = open_stored_ledger(store, settings, node_id=node_id, from_snapshot=True)
    # A ledger that fails its own invariants must not be served: stop before the writer.
    problems = check_invariants(rec.ledger)
    if problems:
        raise AssertionError("ledger invariants fail after recovery: " + "; ".join(problems))
    catalog.upsert(store.catalog_rows())
    catalog.set_reference_prices(store.reference_prices())
    return rec
