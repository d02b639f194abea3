"""Evidence for auditors: Ed25519 keys, the signed daily bundle, and its verification.

``keys.py`` makes and loads the key pair, ``bundle.py`` builds a day's bundle from a
ledger (the engine's, or a replay of a store), ``verify.py`` checks one without the
database, ``commands.py`` holds the ``lijian keys``, ``evidence`` and ``verify`` commands.
"""
