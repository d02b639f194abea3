"""The one replay: a fresh ledger with a log of entries applied from zero.

What a restart does after its snapshot, what ``lijian audit`` checks, and what reports
read when they need the campaign as the log made it. Balances are derived from the
immutable entries by ``Ledger.apply`` and nothing else, so this is the only arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable

from lijian.core.entries import decode
from lijian.core.ledger import Ledger
from lijian.core.settings import Settings


def replay(settings: list[Settings], bodies: Iterable[bytes]) -> Ledger:
    """A fresh ledger for ``settings`` with every encoded entry of ``bodies`` applied."""
    led = Ledger(settings)
    apply = led.apply
    for body in bodies:
        apply(decode(body))
    return led
