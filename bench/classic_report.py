"""What ``bench.classic_bench`` prints: each pass's tables, the unpinned one first (the
headline, where the targets are judged), the pinned one after it.

Targets, on this 2-core machine, in one run: durable grants ≥ 2× the lean classic
stack's grants at the best SQLite worker count and ≥ 1.5× with PostgreSQL ``--workers
2``; sold-out declines ≥ 2× the classic ``GET /noop``; p99 ≤ 50 ms for grants and
declines at 64 connections; with 256 connections no socket errors and p99 ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from redis.utils import HIREDIS_AVAILABLE

from bench.classic_runs import CLASSIC_WORKERS, Config

GRANTS_VS_LEAN_MIN = 2.0
PG_GRANTS_VS_LEAN_MIN = 1.5
DECLINES_VS_NOOP_MIN = 2.0
P99_MS_MAX = 50.0
WIDE_P99_MS_MAX = 200.0
P99_MS_MAX_CONNECTIONS = 64  # runs with more connections are judged by the wide targets


def _ratio(x: float, base: float | None) -> str:
    return f"{x / base:.2f}" if base else "n/a"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _rps(classic: dict[str, Any], key: str) -> float | None:
    run = classic.get(key)
    return run.result.rps if run is not None else None


def _classic_table(classic: dict[str, Any]) -> None:
    if "error" in classic:
        print(f"classic stack FAILED: {classic['error']}")
    print("| classic phase | req/s | p50 ms | p99 ms | requests | non-2xx | load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = (("POST /grant, lean (201)", "lean"), ("POST /redeem, full order (201)", "full"),
             ("GET /noop", "noop"))  # fmt: skip
    for name, key in names:
        if key in classic:
            r, load = classic[key].result, classic[key].load1
            print(
                f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} "
                f"| {r.non_2xx} | {load:.1f} |"
            )
    for c in classic["checks"]:
        print(f"  {c}")


def _lijian_tables(classic: dict[str, Any], configs: list[Config]) -> None:
    lean, full, noop = _rps(classic, "lean"), _rps(classic, "full"), _rps(classic, "noop")
    print(
        "\n| lijian serve | grants/s | ÷ lean grants | ÷ full grants | p99 ms | sold-out "
        "declines/s | ÷ /noop | p99 ms | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in configs:
        if cfg.error is not None:
            print(f"| {cfg.name} | did not start: {cfg.error} ||||||||")
            continue
        cells = ["n/a"] * 4
        if cfg.grants is not None:
            r = cfg.grants.result
            cells = [f"{r.rps:,.0f}", _ratio(r.rps, lean), _ratio(r.rps, full), f"{r.p99_ms:.1f}"]
        if cfg.declines is not None:
            r = cfg.declines.result
            cells += [f"{r.rps:,.0f}", _ratio(r.rps, noop), f"{r.p99_ms:.1f}"]
        else:
            cells += ["n/a"] * 3
        loads = "/".join(f"{r.load1:.1f}" for r in (cfg.grants, cfg.declines) if r is not None)
        print(f"| {cfg.name} | {' | '.join(cells)} | {loads or 'n/a'} |")
    wide = [c for c in configs if c.grants_wide is not None or c.declines_wide is not None]
    if wide:
        conns = next(r.connections for c in wide for r in (c.grants_wide, c.declines_wide) if r)
        print(f"\nwith {conns} connections\n")
        print("| lijian serve | grants/s | p99 ms | socket errors | sold-out declines/s "
              "| p99 ms | socket errors |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        for cfg in wide:
            cells = []
            for run in (cfg.grants_wide, cfg.declines_wide):
                if run is None:
                    cells += ["n/a"] * 3
                else:
                    r = run.result
                    cells += [f"{r.rps:,.0f}", f"{r.p99_ms:.1f}", str(r.socket_errors)]
            print(f"| {cfg.name} | {' | '.join(cells)} |")
    print("\nthe writer during the grants run (a closed loop: in-flight ÷ cycle)\n")
    print("| lijian serve | batches/s | mean entries per batch | mean commit ms |")
    print("|---|---:|---:|---:|")
    for cfg in configs:
        if cfg.writer is not None:
            bps, per, ms = cfg.writer
            print(f"| {cfg.name} | {bps:,.0f} | {per:.1f} | {ms:.2f} |")
    for cfg in configs:
        if cfg.error is not None:
            print(f"  {cfg.name}: FAILED to start: {cfg.error}")
        for c in cfg.checks:
            print(f"  {cfg.name}: {c}")


def _headline_configs(configs: list[Config]) -> list[Config]:
    """The best SQLite worker count (by grants/s) and PostgreSQL with 2 workers."""
    ran = [c for c in configs if c.grants is not None]
    sqlite = [c for c in ran if c.kind == "sqlite"]
    out = [max(sqlite, key=lambda c: c.grants.result.rps if c.grants else 0.0)] if sqlite else []
    out += [c for c in ran if c.kind == "pg" and c.workers == 2]
    return out


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _targets(classic: dict[str, Any], configs: list[Config]) -> None:
    lean, noop = _rps(classic, "lean"), _rps(classic, "noop")
    print("\n| target | configuration | figure | result |")
    print("|---|---|---|---|")
    for cfg in _headline_configs(configs):
        assert cfg.grants is not None
        need = GRANTS_VS_LEAN_MIN if cfg.kind == "sqlite" else PG_GRANTS_VS_LEAN_MIN
        g = cfg.grants.result
        ok = g.rps / lean >= need if lean else None
        print(f"| grants ≥ {need:g}× lean classic grants | {cfg.name} | {g.rps:,.0f} ÷ "
              f"{_num(lean)} = {_ratio(g.rps, lean)} | {_verdict(ok)} |")  # fmt: skip
        if cfg.declines is not None:
            dcl = cfg.declines.result
            ok = dcl.rps / noop >= DECLINES_VS_NOOP_MIN if noop else None
            print(f"| sold-out declines ≥ {DECLINES_VS_NOOP_MIN:g}× classic /noop | {cfg.name} "
                  f"| {dcl.rps:,.0f} ÷ {_num(noop)} = {_ratio(dcl.rps, noop)} "
                  f"| {_verdict(ok)} |")  # fmt: skip
        for label, run, p99_max in (
            ("grants", cfg.grants, P99_MS_MAX), ("declines", cfg.declines, P99_MS_MAX),
            ("grants", cfg.grants_wide, WIDE_P99_MS_MAX),
            ("declines", cfg.declines_wide, WIDE_P99_MS_MAX),
        ):  # fmt: skip
            if run is None:
                continue
            r = run.result
            what = f"p99 ≤ {p99_max:g} ms, {label}, {run.connections} connections"
            figure = f"{r.p99_ms:.1f} ms"
            ok = r.p99_ms <= p99_max
            if run.connections > P99_MS_MAX_CONNECTIONS:
                what += ", no socket errors"
                figure += f", {r.socket_errors} socket errors"
                ok = ok and r.socket_errors == 0
            print(f"| {what} | {cfg.name} | {figure} | {_verdict(ok)} |")


def _print_pass(mode: str, classic: dict[str, Any], configs: list[Config], first: bool) -> None:
    title = "headline" if first else "secondary"
    where = (
        "every process free to use every core"
        if mode == "unpinned"
        else "servers on the server CPUs, wrk on the wrk CPUs"
    )
    print(f"\n## {mode} ({title}: {where})\n")
    _classic_table(classic)
    _lijian_tables(classic, configs)
    _targets(classic, configs)
    bad = [c.name for c in configs if not c.valid]
    if "error" in classic or any(c.startswith("FAILED") for c in classic["checks"]):
        bad.insert(0, "classic stack")
    print(
        f"\n{mode}: valid run" if not bad else f"\n{mode}: INVALID OR INCOMPLETE: {', '.join(bad)}"
    )


def report(
    args: argparse.Namespace, passes: list[tuple[str, dict[str, Any], list[Config]]]
) -> None:
    cmd = "python -m bench.classic_bench " + " ".join(sys.argv[1:])
    print(f"command: {cmd.strip()}")
    print(
        f"wrk: {args.connections} connections ({args.wide} in the unpinned pass's second runs), "
        f"{args.threads} threads, {args.duration} s per run (warm-up {args.warmup} s); "
        f"pinned pass: servers on CPU {args.server_cpus}, wrk on CPU {args.wrk_cpus}; "
        f"lijian access log: {args.access_log}; {os.cpu_count()} CPUs"
    )
    print(
        f"classic stack: FastAPI + uvicorn {CLASSIC_WORKERS} workers, redis-py asyncio "
        f"(hiredis parser: {HIREDIS_AVAILABLE}), one Lua script per grant (not durable); "
        "lean = POST /grant, 3-field body; full = POST /redeem, the whole order via pydantic"
    )
    for i, (mode, classic, configs) in enumerate(passes):
        _print_pass(mode, classic, configs, i == 0)


__all__ = ["report"]
