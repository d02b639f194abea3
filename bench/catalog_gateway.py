"""A catalogue upload over HTTP, through a gateway: the part of ``bench.catalog_bench``
that starts servers.

For each configuration (``sqlite:2``: ``lijian serve --workers 2`` on SQLite, a sequencer
and two gateways; ``pg:2`` the same on PostgreSQL; ``sqlite:1`` one process, no gateway,
for comparison) one signed ``PUT /v1/campaigns/{id}/catalog`` of the whole NDJSON body,
timed from the first byte sent to the answer; checked: 200 and ``{"upserted": lines}``.
``--hogs N`` runs N CPU-bound processes beside it (a loaded machine). The load average
is printed before and after each upload.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.classic_bench import GRANTS_CID, LijianServer, PgDatabase

UPLOAD_TIMEOUT_S = 900.0  # the gateway's own limit for 2,000,000 rows is about 20 minutes
HOG = "while True: pass"


@dataclass
class Upload:
    config: str
    wall_s: float
    status: int
    answer: object
    load_before: str
    load_after: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def upload(args: argparse.Namespace, work: Path, config: str, body: bytes, lines: int) -> Upload:
    kind, _, workers = config.partition(":")
    if kind not in ("sqlite", "pg") or workers not in ("1", "2"):
        raise SystemExit(f"catalog_bench: unknown server configuration {config!r}")
    d = work / config.replace(":", "-")
    pg = PgDatabase(args.pg_url, f"catalog_bench_{uuid.uuid4().hex[:8]}") if kind == "pg" else None
    db = pg.url if pg is not None else str(d / "bench.db")
    server = None
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        server = LijianServer(args, d, db, int(workers))
        hogs = [
            subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True)
            for _ in range(args.hogs)
        ]
        before = load_average()
        t0 = time.perf_counter()
        status, out = server.call(
            "PUT",
            f"/v1/campaigns/{GRANTS_CID}/catalog",
            body,
            timeout_s=UPLOAD_TIMEOUT_S,
            **{"Content-Type": "application/x-ndjson"},
        )
        wall_s = time.perf_counter() - t0
        if status == 200 and out != {"upserted": lines}:
            status = -1  # a wrong count is a failure of the run
        return Upload(config, wall_s, status, out, before, load_average())
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        if server is not None:
            server.stop()
        if pg is not None:
            pg.drop()


def run(args: argparse.Namespace, work: Path, body: bytes, lines: int) -> int:
    """Every configuration of ``args.servers``; the exit status (1 if one failed)."""
    configs = [c for c in args.servers.split(",") if c]
    if not configs:
        return 0
    hogs = f", {args.hogs} CPU hogs beside it" if args.hogs else ""
    print(f"\nthrough HTTP, one signed PUT of {lines:,} lines{hogs}")
    print(f"{'server':30} {'wall s':>8} {'lines/s':>10}  answer   load average before → after")
    failed = 0
    for config in configs:
        u = upload(args, work, config, body, lines)
        name = {"1": "one process", "2": "a gateway (--workers 2)"}[config[-1]]
        label = f"{config.split(':')[0]}, {name}"
        rate = f"{lines / u.wall_s:10,.0f}" if u.ok else f"{'-':>10}"
        answer = "200" if u.ok else f"{u.status} {u.answer}"
        print(f"{label:30} {u.wall_s:8.2f} {rate}  {answer:8} {u.load_before} → {u.load_after}")
        failed += not u.ok
    return 1 if failed else 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--servers", default="sqlite:1,sqlite:2,pg:2",
                    help="configurations to upload to over HTTP ('' for none)")  # fmt: skip
    ap.add_argument("--hogs", type=int, default=0, help="CPU-bound processes beside the upload")
    ap.add_argument("--pg-url", default=os.environ.get(
        "LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))  # fmt: skip
    # What classic_bench's LijianServer reads: unpinned, quiet, no access log.
    ap.set_defaults(access_log=False, pin=False, nice=0, server_cpus="0")
