"""Imported by the fork server only (``children.CHILD_IMPORTS``): it ignores SIGTERM; each
child it forks takes SIGTERM's default back.

A supervisor, its fork server and its children share a process group, and a stop is
often sent to the group (a terminal, a test harness, a service manager). The server
dying of that SIGTERM would tell the supervisor that every child had exited (their exit
statuses come through it), while the sequencer was still draining its last commit and
writing its snapshot: the supervisor would exit before it. So the server ignores
SIGTERM and goes when the supervisor does (its end of the server's pipe closes); the
children are stopped as before, by the group's SIGTERM or by the supervisor. (SIGKILL
cannot be ignored: a group's kill -9 still ends every process at once.)
"""

from __future__ import annotations

import signal
from multiprocessing import util


class _Hook:
    """What the after-fork hook is registered on (weakly: it must stay alive)."""


def _default_sigterm(_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_hook = _Hook()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
util.register_after_fork(_hook, _default_sigterm)  # run in each child it forks
