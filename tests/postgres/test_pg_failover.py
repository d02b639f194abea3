"""Failover: an active sequencer, a standby, two gateways that know both, mid-rush
faults (kill -9 of the active sequencer, of a gateway, a PostgreSQL restart, and the
standby's own death after it took over), and then: every acknowledged grant is there,
no order was granted twice, nothing was held that nobody was told of, the audit balances.

The rush retries every unanswered request (503, a dropped connection) with the same
Idempotency-Key until it is answered, as the contract tells integrators to, so at the
end every hold in the ledger was acknowledged to someone: the campaign's held figure is
exactly one discount per acknowledged order.

Each run is one process set on a private PostgreSQL cluster (tests/postgres/torture.py);
``LIJIAN_FAILOVER_RUNS`` runs in CI (different fault timings from a seeded RNG).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from lijian.audit import audit_db
from tests.http.harness import (
    LIJIAN,
    Api,
    campaign_doc,
    catalog_ndjson,
    clients_toml,
    dump_toml,
    free_port,
    link_credentials,
    order,
)
from tests.http.test_replay_after_restart import capture
from tests.postgres.torture import private_cluster
from tests.support import CID

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("torture")]
RUNS = int(os.environ.get("LIJIAN_FAILOVER_RUNS", "3"))
LEASE_TTL_S = 1.0
READY_TIMEOUT_S = 120.0
RUSH_THREADS = 6
ORDERS_PER_THREAD_MAX = 2_000  # the tranche (1,764,705 CNY) covers 47k such orders
HEAL_TIMEOUT_S = 120.0
DISCOUNT_FEN = 3_720  # of harness.order(): payable 24,800 fen at 15%
ANSWER_TIMEOUT_S = 90.0  # a request retried with its key is answered within this


def distinct_free_ports(n: int) -> list[int]:
    """``n`` free ports, no two the same: the kernel may hand out a port it just gave
    (then a gateway and a sequencer's HTTP port collided and one of them never served)."""
    ports: list[int] = []
    for _ in range(100 * n):  # bounded: duplicates are rare
        if len(ports) == n:
            return ports
        if (p := free_port()) not in ports:
            ports.append(p)
    raise AssertionError(f"no {n} distinct free ports")


class Procs:
    """The process set of one run, each in its own process group."""

    def __init__(self, workdir: Path, db: str, lease_ttl_s: float = LEASE_TTL_S,
                 doc: dict | None = None) -> None:  # fmt: skip
        self.workdir = workdir
        self.db = db
        self._waits_seen: dict[int, int] = {}
        camp = workdir / "campaign.toml"
        camp.write_text(dump_toml(doc or campaign_doc()), encoding="utf-8")
        clients = workdir / "clients.toml"
        clients.write_text(clients_toml(), encoding="utf-8")
        ports = distinct_free_ports(6)
        self.seq_ports, self.gw_ports, seq_http_ports = ports[:2], ports[2:4], ports[4:]
        base = ["--campaign", str(camp), "--clients", str(clients), "--db", db,
                "--clock", "manual:2025-02-12T10:00:00+08:00",
                "--lease-ttl", str(lease_ttl_s)]  # fmt: skip
        tls = link_credentials(workdir / "tls", 2)
        self.seq_cmds = [
            [str(LIJIAN), "sequencer", *base, "--listen", f"127.0.0.1:{p}",
             "--port", str(h), "--tls-dir", str(tls / "sequencer")]
            for p, h in zip(self.seq_ports, seq_http_ports, strict=True)
        ]  # fmt: skip
        addrs = [a for p in self.seq_ports for a in ("--sequencer", f"127.0.0.1:{p}")]
        self.gw_cmds = [
            [str(LIJIAN), "gateway", *addrs, "--clients", str(clients), "--port", str(p),
             "--no-access-log", "--tls-dir", str(tls / f"gateway-{i + 1}")]
            for i, p in enumerate(self.gw_ports)
        ]  # fmt: skip
        self.seqs: list[subprocess.Popen[bytes] | None] = [None, None]
        self.gws: list[subprocess.Popen[bytes] | None] = [None, None]

    def _spawn(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip

    def start_sequencer(self, i: int, standby: bool) -> None:
        self.seqs[i] = self._spawn(
            self.seq_cmds[i] + (["--standby"] if standby else []), f"sequencer-{i}"
        )

    def start_gateway(self, i: int) -> None:
        self.gws[i] = self._spawn(self.gw_cmds[i], f"gateway-{i}")

    def active(self) -> int:
        """Which sequencer holds the lease (its name carries its supervisor's pid)."""
        with psycopg.connect(self.db, autocommit=True) as c:
            row = c.execute("SELECT holder FROM sequencer_lease").fetchone()
        assert row is not None
        pid = int(str(row[0]).split(":")[1])
        (i,) = [i for i, p in enumerate(self.seqs) if p is not None and p.pid == pid]
        return i

    def waiting(self, i: int) -> bool:
        """Whether sequencer i is a standby polling the lease."""
        text = (self.workdir / f"sequencer-{i}.log").read_text(errors="replace")
        return text.count("waiting for it to lapse") > self._waits_seen.get(i, 0)

    def mark_waits(self, i: int) -> None:
        text = (self.workdir / f"sequencer-{i}.log").read_text(errors="replace")
        self._waits_seen[i] = text.count("waiting for it to lapse")

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        assert proc is not None and proc.poll() is None, self.tail()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> None:
        for p in [*self.gws, *self.seqs]:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*self.gws, *self.seqs]:
            if p is not None:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(30)

    def tail(self) -> str:
        return "\n".join(
            f"--- {f.name}\n" + f.read_text(errors="replace")[-2500:]
            for f in sorted(self.workdir.glob("*.log"))
        )

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.gw_ports]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for url in self.urls:
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready:\n{self.tail()}"
                time.sleep(0.1)


def wait_for(cond, what: str, procs: Procs) -> None:
    deadline = time.monotonic() + HEAL_TIMEOUT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{procs.tail()}"
        time.sleep(0.1)


def lease_epoch(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT epoch FROM sequencer_lease").fetchone()
    assert row is not None
    return int(row[0])


class Rush:
    """Threads redeeming fresh orders through both gateways, each request retried with
    its own Idempotency-Key until it has an answer."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.granted: dict[str, set[str]] = {}  # order id -> redemption ids answered
        self.declined: list[str] = []
        self.retries = 0
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(RUSH_THREADS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def count(self) -> int:
        with self.lock:
            return len(self.granted)

    def join(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def _run(self, i: int) -> None:
        api = Api(*(self.urls if i % 2 == 0 else list(reversed(self.urls))))
        try:
            for _ in range(ORDERS_PER_THREAD_MAX):
                if self.stopping.is_set():
                    return
                body, key = order(), uuid.uuid4().hex
                self._answer(api, body, key)
        except Exception as exc:  # reported by the test, with the thread's context
            self.errors.append(repr(exc))
        finally:
            api.close()

    def _answer(self, api: Api, body: dict, key: str) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            assert time.monotonic() < deadline, f"order {body['order_id']} never answered"
            try:
                r = api.redeem(body, key=key)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 201:
                with self.lock:
                    self.granted.setdefault(body["order_id"], set()).add(r.json()["id"])
                return
            if r is not None and r.status_code == 200:
                with self.lock:
                    self.declined.append(body["order_id"])
                return
            assert r is None or r.status_code in (429, 503), r.text
            with self.lock:
                self.retries += 1
            time.sleep(0.05)


def answered(send) -> httpx.Response:
    """The first answer that is not a 503 (asked again as Retry-After says)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        r = send()
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def answered_get(api: Api, path: str) -> httpx.Response:
    """A read as a client makes it: a 503 (no sequencer yet, or one not yet sure of its
    lease: a renewal ran late on this busy machine) is asked again, as Retry-After says."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        r = api.get(path)
        if r.status_code != 503 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r
        time.sleep(0.05)


@pytest.mark.parametrize("run", range(RUNS))
def test_standby_takes_over_mid_rush_and_nothing_is_lost_or_granted_twice(tmp_path, run):
    rng = random.Random(run)
    with private_cluster() as pg:
        procs = Procs(tmp_path, pg.url)
        try:
            procs.start_sequencer(0, standby=False)
            procs.start_gateway(0)
            procs.start_gateway(1)
            procs.wait_ready()
            procs.start_sequencer(1, standby=True)
            wait_for(lambda: procs.waiting(1), "the standby", procs)
            setup = Api(*procs.urls)
            # Captured as it went on the wire: replayed after the takeover, it is refused.
            upload = capture("PUT", f"/v1/campaigns/{CID}/catalog", catalog_ndjson(),
                             "ops", "application/x-ndjson")  # fmt: skip
            r = upload.send(procs.urls[0])
            assert r.status_code == 200, r.text
            assert lease_epoch(pg.url) == 1 and procs.active() == 0
            rush = Rush(procs.urls)
            rush.start()

            def resumed(what: str) -> None:
                n = rush.count()
                wait_for(lambda: rush.count() >= n + RUSH_THREADS, f"grants after {what}", procs)

            # 1. The active sequencer dies: the standby takes the lease, rebuilds, serves.
            time.sleep(rng.uniform(0.2, 1.0))
            procs.kill(procs.seqs[0])
            wait_for(lambda: lease_epoch(pg.url) == 2, "the first takeover", procs)
            assert procs.active() == 1
            resumed("the first takeover")
            replayed = answered(lambda: upload.send(procs.urls[1]))
            assert replayed.status_code == 401, replayed.text
            assert replayed.json()["code"] == "nonce_reused"
            # 2. A gateway dies and comes back; the dead sequencer comes back as standby.
            procs.kill(procs.gws[1])
            procs.start_gateway(1)
            procs.mark_waits(0)
            procs.start_sequencer(0, standby=True)
            wait_for(lambda: procs.waiting(0), "the new standby", procs)
            resumed("a gateway's death")
            # 3. PostgreSQL restarts under everyone: the active one exits, its supervisor
            # starts it again, and it takes its own lease back (or the standby does).
            time.sleep(rng.uniform(0.1, 0.8))
            pg.restart()
            resumed("a database restart")
            # 4. Whichever sequencer serves now dies too: the other takes over.
            epoch = lease_epoch(pg.url)
            other = 1 - procs.active()
            time.sleep(rng.uniform(0.1, 0.8))
            procs.kill(procs.seqs[1 - other])
            wait_for(lambda: lease_epoch(pg.url) > epoch, "the second takeover", procs)
            assert procs.active() == other
            resumed("the second takeover")
            rush.join()
            assert not rush.errors, (rush.errors[:3], procs.tail())
            # One redemption per order, however often its request was retried.
            assert all(len(ids) == 1 for ids in rush.granted.values()), rush.granted
            assert rush.declined == []  # the tranche covers every order of the rush
            check = Api(*procs.urls)
            for ids in rush.granted.values():
                (rid,) = ids
                r = answered_get(check, f"/v1/redemptions/{rid}")
                assert r.json()["status"] == "held", r.text
            status = answered_get(check, f"/v1/campaigns/{CID}/status").json()
            # Nothing held that nobody was told of: exactly one discount per answer.
            assert status["held_fen"] == DISCOUNT_FEN * len(rush.granted), status
            assert status["granted_fen"] == 0
            assert rush.retries > 0  # the faults were felt, and healed by retries
            setup.close()
            check.close()
        finally:
            procs.stop_all()
        rep = audit_db(pg.url)
        assert rep.ok, rep.violations
