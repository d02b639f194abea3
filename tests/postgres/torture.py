"""The fault suite: the engine process (a sequencer's Engine on PostgreSQL) through a rush,
killed with SIGKILL at random moments and restarted, while PostgreSQL itself is restarted;
then everything is checked. (Gateway and sequencer kills behind HTTP: tests/http.)

    .venv/bin/python -m tests.postgres.torture --runs 100      # what `make torture` runs

Each run uses a fresh schema. At the end of a run: the audit (replay of the global log
from zero, every invariant, stored person rows, pool and lease rows) passes to the fen;
nothing is overspent (Σ held + granted ≤ released); no person is over the cap; every
grant, capture and void a node acknowledged (printed after its commit) is in the ledger.

PostgreSQL restarts use a private cluster (initdb in a temporary directory, its own
port) so that restarting it cannot break other tests running at the same time; with
``--main-cluster`` the machine's cluster is restarted instead (pg_ctlcluster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lijian.audit import audit_db
from lijian.core.ledger import Ledger
from lijian.core.settings import parse_settings
from lijian.ledger_key import ENV_KEY_FILE
from lijian.store.postgres import PostgresStore
from tests.postgres import pgutil
from tests.postgres.torture_config import CAP_FEN, DAY

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql") / "15" / "bin"
MAX_RESTARTS_PER_RUN = 60
CHILD_STOP_S = 10.0
FIRST_ACK_TIMEOUT_S = 60.0


# ------------------------------------------------------------- private cluster
class PrivateCluster:
    """A throwaway PostgreSQL server: restartable without disturbing anyone else."""

    def __init__(self) -> None:
        versions = sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())
        self.bin = Path("/usr/lib/postgresql") / versions[-1] / "bin"
        self.dir = Path(tempfile.mkdtemp(prefix="lijian-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.dir}'\nmax_connections = 80\n"
            "shared_buffers = 32MB\nfsync = on\nsynchronous_commit = on\n"
            "deadlock_timeout = 200ms\n"
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(conf)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        log = str(self.dir / "server.log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", *args
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """Fast shutdown (every connection dropped, nothing flushed by a checkpoint that
        the WAL does not already hold), then start: what a crash-and-recover costs."""
        self._ctl("restart", "-m", "immediate")

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    c = PrivateCluster()
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------- a run
@dataclass
class Node:
    worker: int
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


@dataclass
class RunResult:
    seed: int
    grants: int = 0
    captures: int = 0
    voids: int = 0
    kills: int = 0
    restarts: int = 0
    pg_restarts: int = 0
    granted_fen: int = 0
    released_fen: int = 0
    problems: list[str] = field(default_factory=list)


def _child_log() -> int:
    """Children's stderr: discarded, unless LIJIAN_TORTURE_LOG names a file to append to."""
    path = os.environ.get("LIJIAN_TORTURE_LOG")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if path else subprocess.DEVNULL


def _spawn(url: str, worker: int, workers: int, seed: str) -> Node:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.postgres.torture_child",
            url,
            str(worker),
            str(workers),
            seed,
        ],
        stdout=subprocess.PIPE,
        stderr=_child_log(),
        cwd=ROOT,
        env=env,
    )
    node = Node(worker, proc)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            node.lines.append(raw.decode().strip())

    node.reader = threading.Thread(target=read, daemon=True)
    node.reader.start()
    return node


def run_once(
    base_url: str,
    seed: int,
    duration_s: float = 6.0,
    workers: int = 1,
    restart_pg: Callable[[], None] | None = None,
) -> RunResult:
    """One run in a fresh schema of ``base_url``'s database. Returns what it found."""
    rng = random.Random(seed)
    schema = f"tor_{seed}_{uuid.uuid4().hex[:8]}"
    url = _schema(base_url, schema)
    res = RunResult(seed)
    nodes: dict[int, Node] = {}
    finished: list[Node] = []
    incarnation = 0

    def start(w: int) -> None:
        nonlocal incarnation
        incarnation += 1
        nodes[w] = _spawn(url, w, workers, f"{seed}.{w}.{incarnation}")

    # Faults are timed from the first acknowledged grant: a node still importing its
    # modules when it is killed tests nothing (children start in 1-4 s on a busy machine).
    kills = sorted(rng.uniform(0.2, duration_s) for _ in range(rng.randint(2, 4)))
    pg_at = rng.uniform(0.5, duration_s - 1.0) if restart_pg else None
    try:
        for w in range(workers):
            start(w)
        t_wait = time.monotonic() + FIRST_ACK_TIMEOUT_S
        while not any(n.lines for n in nodes.values()) and time.monotonic() < t_wait:
            time.sleep(0.05)
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < duration_s:
            if kills and now >= kills[0]:
                kills.pop(0)
                victim = nodes[rng.randrange(workers)]
                victim.proc.send_signal(signal.SIGKILL)
                res.kills += 1
            if pg_at is not None and now >= pg_at and restart_pg is not None:
                pg_at = None
                restart_pg()
                res.pg_restarts += 1
            for w, n in list(nodes.items()):
                if n.proc.poll() is not None:  # killed, or stopped itself (fail-stop)
                    finished.append(n)
                    if res.restarts < MAX_RESTARTS_PER_RUN:
                        res.restarts += 1
                        start(w)
            time.sleep(0.05)
    finally:
        for n in nodes.values():  # the harshest end: no clean shutdown for anyone
            n.proc.send_signal(signal.SIGKILL)
        for n in [*finished, *nodes.values()]:
            n.proc.wait(CHILD_STOP_S)
            if n.reader is not None:
                n.reader.join(CHILD_STOP_S)
    try:
        _verify(url, [*finished, *nodes.values()], res)
    finally:
        pgutil.execute(base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return res


def _schema(base_url: str, schema: str) -> str:
    pgutil.execute(base_url, f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


def _verify(url: str, nodes: list[Node], res: RunResult) -> None:
    held: dict[str, tuple[int, str]] = {}
    captured: set[str] = set()
    voided: set[str] = set()
    for n in nodes:
        for line in n.lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "H":
                held[parts[1]] = (int(parts[2]), parts[3])
            elif len(parts) == 2 and parts[0] == "C":
                captured.add(parts[1])
            elif len(parts) == 2 and parts[0] == "V":
                voided.add(parts[1])
    res.grants, res.captures, res.voids = len(held), len(captured), len(voided)
    rep = audit_db(url)
    res.problems += rep.violations
    store = PostgresStore(url)
    try:
        led = Ledger([parse_settings(json.loads(raw)) for _, raw in store.campaigns()])
        for _, e in store.iter_entries():
            led.apply(e)
    finally:
        store.close()
    missing = [rid for rid in held if rid not in led.redemptions]
    if missing:
        res.problems.append(f"acknowledged grants lost: {missing[:5]} ({len(missing)})")
    for rid, (fen, person) in held.items():
        r = led.redemptions.get(rid)
        if r is not None and (r.discount_fen, r.person_id) != (fen, person):
            res.problems.append(f"{rid}: acknowledged {fen} for {person}, ledger differs")
    for rid in captured:
        r = led.redemptions.get(rid)
        if r is None or r.status != "captured":
            res.problems.append(f"acknowledged capture lost: {rid}")
    for rid in voided:
        r = led.redemptions.get(rid)
        if r is None or r.status != "voided":
            res.problems.append(f"acknowledged void lost: {rid}")
    for b in led.books.values():
        t = b.tranches[DAY]
        res.released_fen = t.released_fen
        res.granted_fen = t.granted_fen + t.held_fen
        if t.granted_fen + t.held_fen > t.released_fen:
            res.problems.append(f"overspent: {t.granted_fen} + {t.held_fen} > {t.released_fen}")
        for p in b.persons.values():
            if p.used_fen + p.held_fen > CAP_FEN:
                res.problems.append(f"cap exceeded: {p.person_id} {p.used_fen}+{p.held_fen}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="engine processes (one writer: 1)")
    ap.add_argument("--duration-s", type=float, default=6.0)
    ap.add_argument("--main-cluster", action="store_true", help="restart the machine's cluster")
    a = ap.parse_args()
    with contextlib.ExitStack() as stack:
        # A PostgreSQL ledger needs its key file named (lijian.ledger_key); the children
        # inherit it. Under pytest, tests/conftest.py names one already.
        if not os.environ.get(ENV_KEY_FILE):
            keys = stack.enter_context(tempfile.TemporaryDirectory(prefix="lijian-key-"))
            os.environ[ENV_KEY_FILE] = os.path.join(keys, "ledger.key")
        if a.main_cluster:
            base, restart = pgutil.BASE_URL, pgutil.restart_postgres
        else:
            c = stack.enter_context(private_cluster())
            base, restart = c.url, c.restart
        failed = 0
        for i in range(a.runs):
            r = run_once(base, a.seed + i, a.duration_s, a.workers, restart)
            failed += bool(r.problems)
            print(
                f"run {i + 1}/{a.runs} seed {r.seed}: {r.grants} grants, {r.captures} captures,"
                f" {r.voids} voids, {r.kills} kills, {r.restarts} restarts, {r.pg_restarts} pg"
                f" restarts, {r.granted_fen}/{r.released_fen} fen"
                f" {'OK' if not r.problems else 'FAIL ' + '; '.join(r.problems[:3])}",
                flush=True,
            )
        print(f"{a.runs - failed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
