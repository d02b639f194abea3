"""Draws in blocks are the draws one at a time: the same numbers, the stream left in the
same place (a seed gives the same simulation, lijian.sim.draws)."""

from __future__ import annotations

import itertools
import random

from lijian.sim.arrivals import sample_offset_ms, sample_offsets_ms
from lijian.sim.config import ArrivalCurve
from lijian.sim.draws import peek, randoms, skip
from lijian.sim.population import Population, Profile


def test_a_block_of_randoms_is_the_stream_one_call_at_a_time() -> None:
    block, single = random.Random("2025:who"), random.Random("2025:who")
    block.gauss(0.0, 1.0)  # a cached second gaussian is kept across the hand-over
    single.gauss(0.0, 1.0)
    assert randoms(block, 10_001).tolist() == [single.random() for _ in range(10_001)]
    assert block.getstate() == single.getstate()
    assert block.gauss(0.0, 1.0) == single.gauss(0.0, 1.0)
    assert peek(block, 5) == [single.random() for _ in range(5)]
    skip(block, 5)
    assert block.getstate() == single.getstate()
    assert randoms(block, 0).tolist() == []


def test_a_days_offsets_in_one_block_are_the_offsets_one_at_a_time() -> None:
    curves = (ArrivalCurve(), ArrivalCurve(preopen_share=0.3, burst_share=0.2, burst_tau_s=7.5))
    for curve, window_s in itertools.product(curves, (43_200.0, 999.5)):
        block, single = random.Random(7), random.Random(7)
        got = sample_offsets_ms(curve, block, window_s, 20_000)
        assert got == [sample_offset_ms(curve, single, window_s) for _ in range(20_000)]
        assert block.getstate() == single.getstate()
        assert min(got) < 0 < max(got) < window_s * 1000  # both branches and the pre-open


def test_persons_picked_in_one_block_are_the_persons_picked_one_at_a_time() -> None:
    rng = random.Random(3)
    weights = [rng.lognormvariate(0.0, 1.2) for _ in range(5_000)]
    profiles = [Profile.__new__(Profile) for _ in weights]  # only their positions matter
    pop = Population(profiles, list(itertools.accumulate(weights)))
    block, single = random.Random("2025:who"), random.Random("2025:who")
    picked = pop.pick_indices(block, 50_000)
    assert [id(profiles[i]) for i in picked] == [id(pop.pick(single)) for _ in range(50_000)]
    assert block.getstate() == single.getstate()
    assert len(set(picked)) > 4_000  # weighted, yet most persons come
