"""The pure domain core of lijian.

Nothing in this package performs I/O or reads the wall clock: time is always passed in
(``now_ms``), storage and geography are ports implemented by adapters outside ``core``.
That is what lets the whole rule set and ledger run under hypothesis in microseconds.
"""
