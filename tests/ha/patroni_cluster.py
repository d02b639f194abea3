"""A PostgreSQL cluster managed by Patroni on this machine: three etcd members and three
PostgreSQL members, each on private ports, with ``synchronous_mode`` on.

What production would run on three machines, here as processes: etcd (Debian's
``etcd-server``) is the consensus store Patroni keeps its leader key in; each Patroni
runs one PostgreSQL (as the ``postgres`` user) and promotes a synchronous standby when
the leader's key expires. Losing a machine is ``kill -9`` of that member's whole process
group (Patroni and its PostgreSQL).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MEMBERS = 3
ETCD_CLIENT_PORT0 = 23791  # etcd members: client 23791-23793, peer 23801-23803
ETCD_PEER_PORT0 = 23801
PG_PORT0 = 5451  # PostgreSQL members 5451-5453, their Patroni REST API 8451-8453
REST_PORT0 = 8451
READY_TIMEOUT_S = 180.0
HTTP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Timing:
    """Patroni's failure detection (``ttl`` of the leader key, its loop, its retries) and
    what a commit waits for."""

    ttl_s: int = 5
    loop_wait_s: int = 1
    retry_timeout_s: int = 2
    # ``on``: acknowledged once the synchronous standby has flushed it. ``remote_apply``
    # (once it has applied it) was tried for a promoted standby with nothing left to
    # replay, but then every commit of the new primary, the lease's take among them,
    # waits for a standby that is itself catching up with the new timeline: lijian's
    # share of two runs was 1.8-13.6 s (load average 16-21), against 1.5-2.7 s with ``on``.
    synchronous_commit: str = "on"

    def __post_init__(self) -> None:
        # Patroni's own rule: a leader must be able to retry within its key's ttl.
        assert self.loop_wait_s + 2 * self.retry_timeout_s <= self.ttl_s, self


def _etcd_cluster() -> str:
    return ",".join(f"e{i}=http://127.0.0.1:{ETCD_PEER_PORT0 + i}" for i in range(MEMBERS))


def etcd_hosts() -> str:
    return ",".join(f"127.0.0.1:{ETCD_CLIENT_PORT0 + i}" for i in range(MEMBERS))


def patroni_yaml(i: int, data: Path, timing: Timing) -> str:
    """Member ``i``'s configuration (YAML is a superset of JSON: written as JSON)."""
    doc = {
        "scope": "lijian-ha",
        "name": f"pg{i}",
        "restapi": {"listen": f"127.0.0.1:{REST_PORT0 + i}",
                    "connect_address": f"127.0.0.1:{REST_PORT0 + i}"},
        "etcd3": {"hosts": etcd_hosts()},
        "watchdog": {"mode": "off"},
        "bootstrap": {
            "dcs": {
                "ttl": timing.ttl_s, "loop_wait": timing.loop_wait_s,
                "retry_timeout": timing.retry_timeout_s, "maximum_lag_on_failover": 1048576,
                "synchronous_mode": True, "synchronous_mode_strict": False,
                "postgresql": {
                    "use_pg_rewind": True, "use_slots": True,
                    "parameters": {
                        "wal_level": "replica", "hot_standby": "on", "max_wal_senders": 10,
                        "max_replication_slots": 10, "wal_log_hints": "on",
                        "synchronous_commit": timing.synchronous_commit,
                        "max_connections": 60,
                        "shared_buffers": "64MB", "fsync": "on",
                        # A promoted standby's startup process and a replica refused by
                        # the new leader both wait this long before trying again (5 s by
                        # default): it was a whole ttl added to some promotions.
                        "wal_retrieve_retry_interval": "500ms",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            "pg_hba": ["host all all 127.0.0.1/32 trust",
                       "host replication all 127.0.0.1/32 trust",
                       "local all all trust"],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{PG_PORT0 + i}",
            "connect_address": f"127.0.0.1:{PG_PORT0 + i}",
            "bin_dir": str(PG_BIN),
            "data_dir": str(data / f"pg{i}"),
            "pgpass": str(data / f"pgpass{i}"),
            "authentication": {"replication": {"username": "postgres"},
                               "superuser": {"username": "postgres"}},
            "parameters": {"unix_socket_directories": str(data)},
        },
    }  # fmt: skip
    return json.dumps(doc, indent=1)


def multi_host_url(db: str) -> str:
    """The URL lijian is given: every member, the one that takes writes is used."""
    hosts = ",".join(f"127.0.0.1:{PG_PORT0 + i}" for i in range(MEMBERS))
    return f"postgresql://postgres@{hosts}/{db}?target_session_attrs=read-write"


class PatroniCluster:
    """Three etcd members and three Patroni members under ``workdir``."""

    def __init__(self, workdir: Path, timing: Timing) -> None:
        self.workdir = workdir
        self.timing = timing
        self.data = workdir / "pgdata"
        self.etcd: list[subprocess.Popen[bytes]] = []
        self.patroni: list[subprocess.Popen[bytes] | None] = [None] * MEMBERS

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.data.mkdir(parents=True)
        pg = pwd.getpwnam("postgres")
        os.chown(self.data, pg.pw_uid, pg.pw_gid)
        self.data.chmod(0o700)
        for i in range(MEMBERS):
            self.etcd.append(self._spawn([
                "etcd", "--name", f"e{i}", "--data-dir", str(self.workdir / f"etcd{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT0 + i}",
                "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT0 + i}",
                "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT0 + i}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT0 + i}",
                "--initial-cluster", _etcd_cluster(), "--initial-cluster-state", "new",
                "--initial-cluster-token", "lijian-ha",
            ], f"etcd{i}"))  # fmt: skip
        for i in range(MEMBERS):
            cfg = self.workdir / f"patroni{i}.yml"
            cfg.write_text(patroni_yaml(i, self.data, self.timing), encoding="utf-8")
            cfg.chmod(0o644)
            self.start_member(i)
            if i == 0:  # the first one bootstraps the cluster; the others clone it
                self.wait(lambda: self.leader() == 0, "pg0 to bootstrap")
        self.wait(self.healthy, "a leader, a synchronous standby and a replica")

    def start_member(self, i: int) -> None:
        cfg = self.workdir / f"patroni{i}.yml"
        self.patroni[i] = self._spawn(["runuser", "-u", "postgres", "--", "patroni", str(cfg)],
                                      f"patroni{i}")  # fmt: skip

    def _spawn(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.workdir)  # fmt: skip

    def stop(self) -> None:
        for p in [*self.patroni, *self.etcd]:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)
        # PostgreSQL left behind by a killed Patroni (its own session): end it too.
        for i in range(MEMBERS):
            pid = self.postmaster_pid(i)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def cleanup(self, keep_logs: bool = False) -> None:
        """Remove the work folder, or (``keep_logs``) only its data (hundreds of MB a run)."""
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        shutil.rmtree(self.data, ignore_errors=True)
        for i in range(MEMBERS):
            shutil.rmtree(self.workdir / f"etcd{i}", ignore_errors=True)

    # ------------------------------------------------------------- faults
    def lose_member(self, i: int) -> None:
        """The machine of member ``i`` is lost: Patroni and PostgreSQL, kill -9."""
        pid = self.postmaster_pid(i)
        p = self.patroni[i]
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.patroni[i] = None

    def postmaster_pid(self, i: int) -> int | None:
        f = self.data / f"pg{i}" / "postmaster.pid"
        try:
            return int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # --------------------------------------------------------------- state
    def members(self) -> list[dict[str, object]]:
        for i in range(MEMBERS):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{REST_PORT0 + i}/cluster",
                                            timeout=HTTP_TIMEOUT_S) as r:  # fmt: skip
                    return list(json.loads(r.read())["members"])
            except OSError:
                continue
        return []

    def leader(self) -> int | None:
        for m in self.members():
            if m.get("role") == "leader" and m.get("state") == "running":
                return int(str(m["name"])[2:])
        return None

    def sync_standby(self) -> bool:
        """A leader and a synchronous standby: what Patroni's ``synchronous_mode`` needs
        to fail over at all (it promotes only the synchronous standby; a leader lost
        before it has one is not replaced)."""
        roles = {str(m.get("role")) for m in self.members()
                 if m.get("state") in ("running", "streaming")}  # fmt: skip
        return {"leader", "sync_standby"} <= roles

    def healthy(self) -> bool:
        ms = self.members()
        roles = sorted(str(m.get("role")) for m in ms if m.get("state") in ("running", "streaming"))
        return roles == ["leader", "replica", "sync_standby"]

    def wait(self, cond, what: str, timeout_s: float = READY_TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        return "\n".join(f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:]
                         for f in sorted(self.workdir.glob("*.log")))  # fmt: skip
