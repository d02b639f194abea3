"""``lijian simulate --fraud P1,P2 --fraud-share X``: the measured detection of the risk
detectors (lijian.sim.fraud), printed and written as ``fraud.json`` in the report
directory. Exit 0; 2 for bad input (one line)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from lijian.sim.fraud import FRAUD_SHARE_MAX, PATTERNS, PERSONS_MAX, report_lines, run_fraud


def run_fraud_command(
    campaign: Path, out_dir: Path, persons: int, seed: int, patterns: str, share: float,
    console: Console,
) -> int:  # fmt: skip
    from lijian.core.settings import SettingsError
    from lijian.inputs import load_settings_file

    asked = [p.strip() for p in patterns.split(",") if p.strip()]
    bad = [p for p in asked if p not in PATTERNS]
    if not asked or bad:
        console.print(f"[red]--fraud: one or more of {', '.join(PATTERNS)}[/red]")
        return 2
    if not 0 < share <= FRAUD_SHARE_MAX:
        console.print(f"[red]--fraud-share must be above 0 and at most {FRAUD_SHARE_MAX}[/red]")
        return 2
    if not 0 < persons <= PERSONS_MAX:
        console.print(f"[red]--persons must be 1..{PERSONS_MAX} with --fraud[/red]")
        return 2
    try:
        settings = load_settings_file(campaign)
    except (SettingsError, OSError) as exc:
        console.print(f"[red]{campaign}: {exc}[/red]", markup=False)
        return 2
    res = run_fraud(settings, persons, seed, share, dict.fromkeys(asked))
    for line in report_lines(res):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        "thresholds: " + json.dumps(res.thresholds, sort_keys=True), markup=False, soft_wrap=True
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "persons": res.persons, "seed": seed, "fraud_share": share,
        "thresholds": res.thresholds, "flags": res.flags_by_code,
        "honest_persons_with_grant": res.honest_granted,
        "honest_persons_flagged": res.honest_flagged,
        "patterns": {p: {"granted_fen": m, "caught_fen": c, "fraudsters": n, "flagged": h}
                     for p, (m, c, n, h) in res.patterns.items()},
    }  # fmt: skip
    (out_dir / "fraud.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return 0
