"""lijian (立减): the engine that runs a city's consumption-voucher campaign.

The public surface is small on purpose:

- :mod:`lijian.core` — the pure domain (settings, rules, ledger state machine). No I/O.
- :class:`lijian.engine.Engine` — the Python API used by the HTTP layer, the CLI and the
  simulator: quote, redeem (hold), capture, void, refund, status, person quota, clock.
"""

__version__ = "0.1.0"
