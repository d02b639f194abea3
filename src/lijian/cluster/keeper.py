"""The lease keeper: a small process of its own that takes and renews the lease.

Why a process: a sequencer's own threads cannot be trusted to renew on time. Recovery
decodes a snapshot and replays the log, and msgspec holds the GIL through a whole
decode (seconds for a city's ledger); a renewal thread in the same interpreter then
waits for the GIL while the lease lapses, a standby takes over, and the two sequencers
depose each other in turn (each recovery longer than the lease). The keeper has its own
interpreter and does nothing else, so nothing the sequencer runs can starve it: the
lease is held from the moment it is taken, through recovery, for as long as the
sequencer lives.

The sequencer talks to its keeper over two pipes:

- keeper's stdin: one JSON line with the lease's parameters, then ``release`` on a clean
  stop. End of file means the sequencer died: the keeper stops renewing and exits, so
  the lease lapses and a standby takes over (it never outlives its sequencer).
- keeper's stdout: one line per event: ``taken EPOCH STARTED_S``, ``renewed STARTED_S``,
  ``refused WHY`` (not taken in the wait allowed), ``lost WHY``. ``STARTED_S`` is
  ``time.monotonic()`` at the start of the statement that took or renewed the lease;
  the monotonic clock is the machine's, the same in both processes, so the sequencer's
  own view of validity (``VALID_FRACTION`` of the TTL after that start) is exactly what
  it would compute had it renewed itself.

Safety is unchanged: the fencing epoch in every commit (``lease.py``). A keeper that
dies is a lost lease: the sequencer exits (``owner.hold``), as it does when deposed.

A warm spare sequencer (``supervisor.py``) starts its keeper ahead of time
(``prestart``): the interpreter and its imports are ready, waiting for the parameters
line, so that a takeover does not wait for an interpreter to start on a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from lijian.cluster.lease import VALID_FRACTION, Lease

log = logging.getLogger("lijian.lease")

START_TIMEOUT_S = 30.0  # the keeper's interpreter and first connection, on a busy machine
RELEASE_TIMEOUT_S = 10.0  # the release statement has a 5 s timeout of its own
LINE_BYTES_MAX = 4_096  # a keeper's line; a longer one is a broken keeper
KEEPER_NICENESS = -5  # scheduled ahead of ordinary processes, where permitted


class LeaseRefused(Exception):
    """The lease was not taken in the wait allowed (another sequencer serves)."""


_prestarted: list[subprocess.Popen[bytes]] = []  # at most one, used by the next take


# The keeper's first statement lowers its niceness, before its imports: on a starved
# machine its interpreter's start is the slow part (a plain ``-m`` would import this
# module, the lease and psycopg at the sequencer's priority first).
_BOOT = (
    "import os\n"
    "try:\n"
    f"    os.setpriority(os.PRIO_PROCESS, 0, {KEEPER_NICENESS})\n"
    "except OSError:\n"
    "    pass\n"
    "from lijian.cluster.keeper import main\n"
    "raise SystemExit(main())\n"
)


def _spawn_keeper() -> subprocess.Popen[bytes]:
    # stderr is inherited: the keeper's log lines join the sequencer's.
    return subprocess.Popen(
        [sys.executable, "-c", _BOOT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )


def prestart() -> None:
    """Start this process's next keeper now; it waits for its parameters (``take``)."""
    if not _prestarted:
        _prestarted.append(_spawn_keeper())


def _keeper_process() -> subprocess.Popen[bytes]:
    """The prestarted keeper if it is still alive, else a new one."""
    while _prestarted:
        proc = _prestarted.pop()
        if proc.poll() is None:
            return proc
    return _spawn_keeper()


class KeptLease:
    """The sequencer's side: the epoch, validity, fencing, and release, while the keeper
    process renews. Offers what ``Sequencer`` and the store use of a ``Lease``."""

    def __init__(self, url: str, holder: str, address: str, ttl_s: float) -> None:
        self.url = url
        self.holder = holder
        self.address = address
        self.ttl_s = ttl_s
        self.epoch: int | None = None
        self._valid_until_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._released = False
        self._reader: threading.Thread | None = None
        self.on_deposed: Callable[[str], None] | None = None
        self._fence = Lease(url, holder, address, ttl_s)  # only its fence() is used here

    # ------------------------------------------------------------ start
    def take(self, wait_s: float | None, log_level: str = "info") -> int:
        """Start the keeper and wait until it took the lease (``wait_s`` None: as long as
        it takes, for a standby). Raises ``LeaseRefused`` when the wait ran out."""
        params = {
            "url": self.url,
            "holder": self.holder,
            "address": self.address,
            "ttl_s": self.ttl_s,
            "wait_s": wait_s,
            "log_level": log_level,
        }
        self._proc = _keeper_process()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(params).encode() + b"\n")
        self._proc.stdin.flush()
        first = _read_line(self._proc.stdout)
        word, _, rest = first.partition(" ")
        if word == "taken":
            epoch_text, _, started_text = rest.partition(" ")
            self.epoch = int(epoch_text)
            self._valid_until_s = float(started_text) + self.ttl_s * VALID_FRACTION
            self._fence.epoch = self.epoch
            self._reader = threading.Thread(
                target=self._follow, name="lijian-lease-keeper", daemon=True
            )
            self._reader.start()
            return self.epoch
        self._stop_keeper()
        if word == "refused":
            raise LeaseRefused(rest)
        raise LeaseRefused(f"the lease keeper stopped before taking the lease ({rest or first})")

    def keep(self) -> None:
        """Renewal runs from ``take`` on; kept for the ``Lease`` interface."""
        assert self.epoch is not None

    # ------------------------------------------------------------ follow
    def _follow(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        why = "the lease keeper stopped"
        while True:
            try:
                line = _read_line(self._proc.stdout)
            except OSError as exc:
                why = f"the lease keeper's pipe failed ({exc})"
                break
            if not line:
                break
            word, _, rest = line.partition(" ")
            if word == "renewed":
                self._valid_until_s = float(rest) + self.ttl_s * VALID_FRACTION
                continue
            why = rest if word == "lost" else f"the lease keeper said {line!r}"
            break
        self._valid_until_s = 0.0
        if self._released:
            return
        log.error("lease lost: %s", why)
        if self.on_deposed is not None:
            self.on_deposed(why)

    # ------------------------------------------------------------ use
    def fence(self, conn: Any) -> None:
        self._fence.fence(conn)

    def valid(self) -> bool:
        return time.monotonic() < self._valid_until_s

    def release(self) -> None:
        """After the final commit of a clean stop: let a standby take over at once."""
        if self._released:
            return
        self._released = True
        self._valid_until_s = 0.0
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(b"release\n")
            proc.stdin.flush()
        self._stop_keeper()

    def _stop_keeper(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # end of file: the keeper stops (releasing only if told)
        try:
            proc.wait(RELEASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_line(stream: IO[bytes]) -> str:
    line = stream.readline(LINE_BYTES_MAX)
    return line.decode("utf-8", "replace").strip()


# ------------------------------------------------------------------ the keeper process
class _Keeper:
    """The keeper's own loop: take, say so, renew every TTL/RENEW_DIVISOR, say each."""

    def __init__(self, params: dict[str, Any], out: IO[bytes]) -> None:
        self.lease = Lease(
            str(params["url"]), str(params["holder"]), str(params["address"]),
            float(params["ttl_s"]),
        )  # fmt: skip
        wait = params.get("wait_s")
        self.wait_s = None if wait is None else float(wait)
        self.out = out
        self.release_asked = False

    def say(self, line: str) -> None:
        try:
            self.out.write(line.encode() + b"\n")
            self.out.flush()
        except OSError:
            # The sequencer is gone (a broken pipe): it can no longer use the lease, so
            # stop renewing, as at the end of its pipe; never a traceback in its log. What
            # is left in the buffer goes to /dev/null, or its flush at exit would raise.
            self.lease.stop()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)

    def watch_stdin(self, stdin: IO[bytes]) -> None:
        """A thread: ``release`` or end of file (the sequencer died) stops the keeper."""
        while True:
            line = stdin.readline(LINE_BYTES_MAX)
            if not line:
                break
            if line.strip() == b"release":
                self.release_asked = True
                break
        self.lease.stop()

    def run(self) -> int:
        from lijian.cluster.lease import Deposed

        try:
            epoch = self.lease.acquire(self.wait_s)
        except Deposed as exc:
            self.say(f"refused {exc}")
            return 0
        self.say(f"taken {epoch} {self.lease.last_started_s!r}")
        why = self.lease.renew_until_stopped(lambda s: self.say(f"renewed {s!r}"))
        if self.release_asked:
            self.lease.release()
            return 0
        if why is not None:
            self.say(f"lost {why}")
        return 0


def main() -> int:
    # Deaf to the stop signals a terminal or a service manager sends the whole process
    # group (Ctrl-C, SIGTERM): the keeper must renew until the sequencer's final commit,
    # then release when told. It still ends with its sequencer: the end of its stdin
    # (also while a prestarted keeper waits for its parameters).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Its whole job is to be on time: ahead of the busy processes of its own machine
    # where it may be (root, or CAP_SYS_NICE); as it is elsewhere.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, KEEPER_NICENESS)
    from lijian.http.logs import configure

    first = sys.stdin.buffer.readline(LINE_BYTES_MAX)
    if not first:
        return 0
    params = json.loads(first)
    configure(str(params.get("log_level") or "info"))
    keeper = _Keeper(params, sys.stdout.buffer)
    threading.Thread(
        target=keeper.watch_stdin, args=(sys.stdin.buffer,), name="stdin", daemon=True
    ).start()
    return keeper.run()


if __name__ == "__main__":
    raise SystemExit(main())
