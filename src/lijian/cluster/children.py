"""Where a supervisor's children come from: a fork server started as early as it can be.

A ``spawn``ed child starts an interpreter and imports what it runs (half a second and
more) before it can read its first byte, at every start: the first, every restart after
a death, every spare. Here children come from multiprocessing's ``forkserver``: an
interpreter started once, ahead of them, that imported what they run (``CHILD_IMPORTS``)
and forks each child from that state. Nothing else is shared: the server is a clean
interpreter (not the supervisor, whose signal handlers and sockets a plain ``fork``
would pass on), a child's arguments reach it pickled as with ``spawn``, and ``random``
is reseeded at each fork.

This module imports nothing of lijian, so a command can start the server first thing
(``start_children_server``), and the server's imports run on the other core while the
command imports and checks its own inputs. The server's environment is the command's at
that moment, so what children must inherit (the proxy key, the ledger key's file) is set
before, and ``check_children_environment`` holds it so at every child's start.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

# What a sequencer imports on its way to serving (lazily, in load_inputs, build_app and
# sequencer_app): a spare imports it while it waits.
SPARE_IMPORTS = (
    "lijian.cluster.sequencer", "lijian.cluster.tls", "lijian.http.admission",
    "lijian.inputs", "lijian.http.extras", "lijian.engine", "lijian.ledger_key",
    "lijian.core.settings_text", "lijian.events.receivers", "lijian.events.audits",
    "lijian.store.postgres", "lijian.cluster.proxy",
)  # fmt: skip
# What every child runs, imported once by the fork server; first, what makes the server
# outlive a SIGTERM sent to the whole group (children_server.py: only it imports that).
CHILD_IMPORTS = (
    "lijian.cluster.children_server", "lijian.cluster.roles", "lijian.cluster.follower",
    "lijian.store.pg_reader", "lijian.engine_recovery", "lijian.cluster.gateway",
    *SPARE_IMPORTS,
)  # fmt: skip

_server_environment: list[dict[str, str]] = []  # the command's, when the server started


def children_context() -> Any:
    """The multiprocessing context children are started with (the fork server)."""
    check_children_environment()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(CHILD_IMPORTS))
    return ctx


def start_children_server() -> None:
    """Start the fork server now; its environment, so every child's, is this process's
    at this moment."""
    import multiprocessing.forkserver

    children_context()
    multiprocessing.forkserver.ensure_running()
    _server_environment[:] = [dict(os.environ)]


def check_children_environment() -> None:
    """Children see the environment the fork server started with: nothing changed since
    (a variable set later would silently not reach them)."""
    if _server_environment:
        assert dict(os.environ) == _server_environment[0], (
            "the environment changed after the fork server started: children would not see it"
        )
