"""One sequencer, many gateways (docs/SCALE-OUT.md).

- ``wire.py``: msgpack frames over one stream per gateway, batched per loop turn.
- ``tls.py``: the link's certificates and TLS contexts (both sides authenticate).
- ``sequencer.py``: the one ``Engine`` serving gateways' commands in arrival order.
- ``gateway.py``: ``RemoteEngine``, the gateway's engine: the same methods, over the wire.
- ``supervisor.py``: ``lijian serve --workers N``: a sequencer process, N gateway
  processes on one socket, each replaced when it dies.
"""

# Here, not in lease.py, so the command line can show this default without importing
# psycopg (lease.py needs it; ``lijian --help`` and the SQLite commands do not).
LEASE_TTL_S = 5.0  # a standby takes over at most this long after the holder stopped renewing
