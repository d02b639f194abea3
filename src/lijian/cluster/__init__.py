"""One sequencer, many gateways (docs/SCALE-OUT.md).

- ``wire.py``: msgpack frames over one stream per gateway, batched per loop turn.
- ``sequencer.py``: the one ``Engine`` serving gateways' commands in arrival order.
- ``gateway.py``: ``RemoteEngine``, the gateway's engine: the same methods, over the wire.
- ``supervisor.py``: ``lijian serve --workers N``: a sequencer process, N gateway
  processes on one socket, each replaced when it dies.
"""
