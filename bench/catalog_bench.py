"""A million-line catalogue: lijian's parser, and ``lijian catalog import``, against plain parses.

    .venv/bin/python -m bench.catalog_bench [--lines 1000000] [--repeats 3]

One NDJSON file of ``--lines`` lines (~75 bytes each, the shape a platform uploads) is
written once to a temporary directory, then timed, best of ``--repeats``:

- ``csv.reader``: the standard library splitting the same file into fields, with no
  checking at all: the floor any parser of these bytes is measured against (the baseline);
- ``json.loads``: one ``json.loads`` per line, the obvious Python parse, no checking;
- ``CatalogParser``: the parser ``PUT /v1/campaigns/{id}/catalog`` feeds as the body
  arrives, fed 64 KiB chunks (a request body's pieces): decoding, every field checked,
  strings shared between rows;
- ``catalog import``: ``lijian catalog import`` into a new SQLite file (parse, checks
  against the campaign, the rows committed);
- then over HTTP (``bench/catalog_gateway.py``): one signed ``PUT`` of the whole file to
  ``lijian serve`` per ``--servers`` configuration, through a gateway (``--workers 2``:
  a sequencer and two gateways) on SQLite and PostgreSQL, and one process for
  comparison; ``--hogs N`` adds N CPU-bound processes beside it. Wall seconds (the whole
  request: body sent, parsed, forwarded in parts, stored, answered), with the load
  average before and after.

Each figure is given as wall-clock seconds and as this process's CPU seconds (the one to
trust on a busy machine; the SQLite commit's fsync waits show in wall time only), and as a
ratio of CPU time to the csv.reader baseline of the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.catalog_gateway import add_arguments, run
from lijian.catalog_import import import_catalog_file
from lijian.http.ndjson import CatalogParser

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "chengdu-2025-spring.toml"
BODY_CHUNK_BYTES = 64 * 1024  # about what one ASGI receive() hands over
LINES_MAX = 2_000_000  # the parser's own limit on one upload


def write_catalog(path: Path, lines: int) -> int:
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(f'{{"sku":"JD-M-{i:07d}","category":"fresh_food","platform":"jd"}}\n')
    return path.stat().st_size


def by_csv_reader(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f))


def by_json_loads(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for raw in f if json.loads(raw))


def by_catalog_parser(path: Path) -> int:
    parser = CatalogParser()
    with path.open("rb") as f:
        while chunk := f.read(BODY_CHUNK_BYTES):
            parser.feed(chunk)
    parser.close()
    assert parser.error is None, parser.error
    return len(parser.rows)


def by_catalog_import(path: Path) -> int:
    db = path.with_suffix(".db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    res = import_catalog_file(str(db), str(CAMPAIGN), str(path))
    assert res.error is None, res.error
    return res.rows


def best_of(fn: Callable[[Path], int], path: Path, lines: int, repeats: int) -> tuple[float, float]:
    """(wall s, cpu s), each the best of ``repeats``; every run must see every line."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        got = fn(path)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
        assert got == lines, f"{fn.__name__}: {got:,} lines of {lines:,}"
    return min(walls), min(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local", action=argparse.BooleanOptionalAction, default=True,
                        help="the in-process parses and the import (--no-local: HTTP only)")  # fmt: skip
    add_arguments(parser)
    args = parser.parse_args()
    if not 1 <= args.lines <= LINES_MAX:
        print(f"catalog_bench: --lines must be 1..{LINES_MAX:,}", file=sys.stderr)
        return 2
    cases: list[tuple[str, Callable[[Path], int]]] = [
        ("csv.reader (baseline)", by_csv_reader),
        ("json.loads per line", by_json_loads),
        ("CatalogParser", by_catalog_parser),
        ("catalog import (SQLite)", by_catalog_import),
    ]
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp:
        path = Path(tmp) / "catalog.ndjson"
        size = write_catalog(path, args.lines)
        print(f"{args.lines:,} lines, {size / 1e6:.1f} MB, best of {args.repeats}")
        print(f"{'case':26} {'wall s':>8} {'cpu s':>8} {'cpu vs csv':>11} {'lines/s (cpu)':>14}")
        base_cpu_s = 0.0
        for name, fn in cases if args.local else []:
            wall_s, cpu_s = best_of(fn, path, args.lines, args.repeats)
            base_cpu_s = base_cpu_s or cpu_s
            rate = args.lines / cpu_s if cpu_s else float("inf")
            print(f"{name:26} {wall_s:8.2f} {cpu_s:8.2f} {cpu_s / base_cpu_s:10.2f}x {rate:14,.0f}")
        return run(args, Path(tmp), path.read_bytes(), args.lines)


if __name__ == "__main__":
    raise SystemExit(main())
