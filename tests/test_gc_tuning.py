"""The engine's garbage-collector tuning: survivors of a generation-1 collection are
frozen (the next collection does not walk the ledger's long-lived objects again)."""

from __future__ import annotations

import gc
import weakref

from lijian.gc_tuning import GC_GEN0_OBJECTS, GC_GEN1_EVERY, freeze_survivors, tune_gc


class Node:
    me: object = None


def test_survivors_of_a_generation_1_collection_are_frozen_and_garbage_is_not() -> None:
    was = gc.isenabled()
    try:
        tune_gc()
        tune_gc()  # twice (several engines in one process): one callback
        assert gc.callbacks.count(freeze_survivors) == 1
        assert gc.get_threshold()[:2] == (GC_GEN0_OBJECTS, GC_GEN1_EVERY)
        before = gc.get_freeze_count()
        kept = [[i] for i in range(1_000)]  # long-lived state: survives the collection
        node = Node()
        node.me = node  # cyclic garbage: must be collected, not frozen
        gone = weakref.ref(node)
        del node
        gc.collect(1)
        assert gone() is None
        assert gc.get_freeze_count() >= before + len(kept)
        assert len(gc.get_objects(generation=2)) == 0  # nothing old left for the next walk
        assert len(kept) == 1_000
    finally:
        gc.unfreeze()
        gc.callbacks.remove(freeze_survivors)
        if not was:
            gc.disable()
