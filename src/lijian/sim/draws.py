"""Many draws of a ``random.Random`` at once, the same numbers as one call at a time.

CPython's ``random.Random`` and numpy's legacy ``RandomState`` are the same generator
(MT19937) and turn two 32-bit outputs into a double the same way (53 bits: ``a >> 5``,
``b >> 6``). So a block of ``rng.random()`` values can be drawn in C by handing the
stream's state to a ``RandomState`` and back: the stream then stands exactly where ``n``
calls of ``rng.random()`` would have left it, and a seed gives the same simulation
(tests/sim/test_draws.py holds the equality). This is the simulator's hot path: a
1.5M-person run draws millions of arrivals.
"""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt

MT_WORDS = 624  # MT19937's state: 624 words and a position
MAX_BLOCK = 50_000_000  # one block's doubles (400 MB): far above a day's arrivals


def _state_of(rng: random.Random) -> tuple[np.random.RandomState, object]:
    version, internal, gauss_next = rng.getstate()
    assert version == 3 and len(internal) == MT_WORDS + 1, "CPython's MT19937 state"
    rs = np.random.RandomState()
    key = np.array(internal[:MT_WORDS], dtype=np.uint32)
    rs.set_state(("MT19937", key, int(internal[MT_WORDS]), 0, 0.0))  # no cached gauss: unused
    return rs, gauss_next


def _give_back(rng: random.Random, rs: np.random.RandomState, gauss_next: object) -> None:
    _, key, pos, _, _ = rs.get_state(legacy=True)
    rng.setstate((3, (*(int(x) for x in key), int(pos)), gauss_next))


def randoms(rng: random.Random, n: int) -> npt.NDArray[np.float64]:
    """``n`` values of ``rng.random()``, in order; ``rng`` is advanced past them."""
    assert 0 <= n <= MAX_BLOCK, n
    rs, gauss_next = _state_of(rng)
    out: npt.NDArray[np.float64] = rs.random_sample(n)
    _give_back(rng, rs, gauss_next)
    return out


def peek(rng: random.Random, n: int) -> list[float]:
    """The next ``n`` values of ``rng.random()`` without consuming them (``skip`` then
    consumes as many as were used)."""
    assert 0 <= n <= MAX_BLOCK, n
    rs, _ = _state_of(rng)
    values: list[float] = rs.random_sample(n).tolist()
    return values


def skip(rng: random.Random, n: int) -> None:
    """Advance ``rng`` as ``n`` calls of ``rng.random()`` would."""
    assert 0 <= n <= MAX_BLOCK, n
    rs, gauss_next = _state_of(rng)
    rs.random_sample(n)
    _give_back(rng, rs, gauss_next)
