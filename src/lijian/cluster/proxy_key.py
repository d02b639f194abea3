"""The key gateways vouch for a browser's address with (``proxy.py``), drawn once in the
process that starts the others and inherited by every child through the environment.
Its own module, importing nothing of lijian, so that a command draws it before it starts
its children's fork server (``children.py``), first thing."""

from __future__ import annotations

import os
import secrets

PROXY_KEY_ENV = "LIJIAN_PROXY_KEY"


def ensure_proxy_key() -> None:
    """Draw the gateways' key if none is set; processes started from here inherit it."""
    if not os.environ.get(PROXY_KEY_ENV):
        os.environ[PROXY_KEY_ENV] = secrets.token_urlsafe(32)
