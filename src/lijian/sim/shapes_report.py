"""``lijian simulate --campaign FILE-or-DIR`` for claim campaigns: each shape (claimed
voucher, lottery, trade-in qualification) run without and with identity linking, printed
side by side and written as ``shapes.json`` in the report directory (lijian.sim.shapes).
Exit 0 when every run's ledger passed the audit and no run stopped the engine; 1
otherwise; 2 for bad input (one line on stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from lijian.core.settings import Settings
from lijian.sim.shapes import ShapeConfig, ShapeResult, as_dict, run_shapes

MAX_FILES = 20  # campaign files in one directory run


def is_claims_file(path: Path) -> bool:
    """A campaign file with ``[claims] mode = "claim"`` (read loosely: the full check
    comes with the load)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    claims = doc.get("claims")
    return isinstance(claims, dict) and claims.get("mode") == "claim"


def claim_files(campaign: Path) -> list[Path]:
    if campaign.is_dir():
        return sorted(p for p in campaign.glob("*.toml") if is_claims_file(p))[:MAX_FILES]
    return [campaign]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cny(fen: int) -> str:
    return f"{fen / 100:,.2f}"


HEAD = f"{'shape':<8}{'link':<5}{'claimed':>8}{'used':>7}{'expired':>8}{'granted CNY':>13}"
HEAD += f"{'reached':>8}{'sold out':>9}{'bots':>7}"


def report_lines(results: list[ShapeResult]) -> list[str]:
    """One line a run (fits 80 columns), then what each shape ran and how it ended.
    ``reached``: the share of the claimed value that reached people who used it; ``bots``:
    the bots' share of that money; ``sold out``: after the claim opening, day one."""
    out = [HEAD]
    for r in results:
        sold = "-" if r.sold_out_after_s is None else f"{r.sold_out_after_s:.1f} s"
        out.append(
            f"{r.shape:<8}{'yes' if r.link else 'no':<5}{r.claimed:>8,}{r.used:>7,}"
            f"{r.expired_unused:>8,}{_cny(r.granted_fen):>13}{_pct(r.reached_share):>8}"
            f"{sold:>9}{_pct(r.bot_share):>7}"
        )
    for r in results:
        lost = f", {r.registered:,} registered, {r.lost:,} lost" if r.registered else ""
        end = "audit ok" if r.audit_ok else "AUDIT FAILED"
        if r.failed is not None:
            end += f"; the engine stopped: {r.failed}"
        out.append(
            f"{r.shape}{' + linking' if r.link else ''}: {r.campaign_id}, "
            f"{r.vouchers_per_day:,} vouchers a day, {r.people_served:,} of {r.people:,} "
            f"people served{lost}; {end}"
        )
    return out


def run_shapes_command(
    campaign: Path, out_dir: Path, console: Console, persons: int, seed: int, days: int | None
) -> int:
    from lijian.core.settings import SettingsError
    from lijian.inputs import load_settings_file

    files = claim_files(campaign)
    if not files:
        sys.stderr.write(f"lijian simulate: {campaign}: no campaign file with [claims]\n")
        return 2
    settings: list[Settings] = []
    for f in files:
        try:
            settings.append(load_settings_file(f))
        except SettingsError as exc:
            what = "; ".join(p.message for p in exc.problems)
            sys.stderr.write(f"lijian simulate: {f}: {what}\n")
            return 2
    try:
        cfg = ShapeConfig(people=persons, seed=seed, days=days or 1).check()
    except ValueError as exc:
        sys.stderr.write(f"lijian simulate: {exc}\n")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run_shapes(settings, cfg, out_dir)
    for line in report_lines(results):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    doc = {
        "config": {
            "people": cfg.people, "bot_share": cfg.bot_share, "days": cfg.days,
            "never_use_share": cfg.never_use_share, "stock_share": cfg.stock_share,
            "seed": cfg.seed,
        },
        "shapes": [as_dict(r) for r in results],
    }  # fmt: skip
    (out_dir / "shapes.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {out_dir / 'shapes.json'}", markup=False, highlight=False)
    return 0 if all(r.audit_ok and r.failed is None for r in results) else 1
