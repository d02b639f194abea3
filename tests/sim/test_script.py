"""A rehearsal script is checked before the run: one clear line per mistake, exit 2
from ``lijian simulate --script``, no traceback; and a valid one runs over the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lijian.sim.config import SimConfig
from lijian.sim.runner import campaign_windows, simulation_end_ms
from lijian.sim.script import (
    ACTIONS_MAX,
    SCRIPT_MAX_BYTES,
    Script,
    ScriptError,
    StepOp,
    load_script,
)
from tests.sim.conftest import small_settings
from tests.support import CAMPAIGN_FILE

LIJIAN = [sys.executable, "-m", "lijian.cli"]
CFG = SimConfig(persons=3_000, seed=7, days=3, catalog_skus=100)


def load(tmp: Path, text: str, name: str = "s.toml") -> Script:
    settings = small_settings(days=3)
    windows = campaign_windows(settings, CFG)
    path = tmp / name
    path.write_text(text, "utf-8")
    return load_script(path, windows, settings.tz, simulation_end_ms(settings, windows))


def action(**kv: object) -> str:
    return "[[action]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in kv.items())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (action(day=1, at="10:05", do="explode"),
         "action 1: unknown action do = 'explode' (one of pause, resume, budget, end, block, "
         "lift)"),
        (action(day=1, at="25:00", do="pause"),
         "action 1: at must be a local time HH:MM or HH:MM:SS, not '25:00'"),
        (action(day=1, at="10:5", do="pause"),
         "action 1: at must be a local time HH:MM or HH:MM:SS, not '10:5'"),
        (action(day=0, at="10:05", do="pause"), "action 1: day must be an integer in [1, 3]"),
        (action(day=4, at="10:05", do="pause"), "action 1: day must be an integer in [1, 3]"),
        (action(day="2", at="10:05", do="pause"), "action 1: day must be an integer in [1, 3]"),
        (action(day=1, at="10:05", do="pause", delta_fen=5),
         "action 1: pause: unknown key 'delta_fen'"),
        (action(day=1, at="10:05", do="pause", reason="a\x07b"),
         "action 1: reason contains control characters"),
        (action(day=1, at="10:05", do="pause", reason=" "),
         "action 1: reason is required (1-500 characters)"),
        (action(day=1, at="10:05", do="budget", delta_fen=0),
         "action 1: delta_fen must not be 0"),
        (action(day=1, at="10:05", do="budget", delta_fen=1.5),
         "action 1: delta_fen must be an integer in [-1000000000000000, 1000000000000000]"),
        (action(day=1, at="10:05", do="budget", delta_fen=10**16),
         "action 1: delta_fen must be an integer in [-1000000000000000, 1000000000000000]"),
        (action(day=1, at="10:05", do="budget", delta_fen=5, days=[2, 1]),
         "action 1: days must be sorted, each day once"),
        (action(day=1, at="10:05", do="budget", delta_fen=5, days=[9]),
         "action 1: days: each day is a number in [1, 3]"),
        (action(day=1, at="10:05", do="end", last_day=7),
         "action 1: last_day must be an integer in [1, 3]"),
        (action(day=1, at="10:05", do="block", target="everyone"),
         "action 1: block: target must be one of person, top_person, sku, top_sku"),
        (action(day=1, at="10:05", do="block", target="top_person", kind="robot"),
         "action 1: block: kind must be one of resident, outsider, spoofer"),
        (action(day=1, at="10:05", do="block", target="sku", person="p1"),
         "action 1: block: 'person' does not go with target = 'sku'"),
        (action(day=1, at="10:05", do="lift", block="b"),
         "action 1: lift: block must name the id of an earlier block action"),
        (action(day=1, at="10:05", do="pause", id="x") + action(day=1, at="11:00", do="pause",
                                                                   id="x"),
         "action 2: id 'x' is used by an earlier action"),
        (action(day=3, at="23:50", do="pause", for_min=60 * 24),
         "action 1: its resume would fall after the simulation ends"),
        (action(day=2, at="10:00", do="block", target="top_sku", id="b")
         + action(day=1, at="10:00", do="lift", block="b"),
         "action 2: lift comes before 'b' it acts on"),
        ("[[action]\n", "not valid TOML: Expected ']]' at the end of an array declaration "
         "(at line 1, column 9)"),
        ("[campaign]\n", 'the script holds only a list "action" of actions'),
    ],
)  # fmt: skip
def test_a_bad_script_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScriptError) as err:
        load(tmp_path, text)
    assert str(err.value) == message


def test_a_script_is_bounded(tmp_path: Path) -> None:
    many = action(day=1, at="10:05", do="resume") * (ACTIONS_MAX + 1)
    with pytest.raises(ScriptError, match=f"has {ACTIONS_MAX + 1} actions; at most {ACTIONS_MAX}"):
        load(tmp_path, many)
    big = "# " + "x" * SCRIPT_MAX_BYTES + "\n"
    with pytest.raises(ScriptError, match=f"at most {SCRIPT_MAX_BYTES}"):
        load(tmp_path, big)
    with pytest.raises(ScriptError, match="not valid JSON"):
        load(tmp_path, "{", "s.json")


def test_steps_run_in_time_order_with_four_eyes_defaults(tmp_path: Path) -> None:
    script = load(
        tmp_path,
        action(day=2, at="12:00", do="budget", delta_fen=-500, days=[2, 3], approve_after_min=30)
        + action(day=1, at="10:05:30", do="pause", for_min=10)
        + action(day=1, at="23:00", do="block", target="person", person="p-1", id="b")
        + action(day=2, at="09:00", do="lift", block="b"),
    )
    got = [(s.op, s.by, s.name, s.after) for s in script.steps]
    assert got == [
        (StepOp.PAUSE, "sim-operator-1", "a2", None),
        (StepOp.RESUME, "sim-operator-1", "a2:resume", None),
        (StepOp.BLOCK, "sim-operator-1", "b", None),
        (StepOp.LIFT, "sim-operator-1", "a4", "b"),
        (StepOp.PROPOSE, "sim-operator-1", "a1", None),
        (StepOp.APPROVE, "sim-operator-2", "a1:approve", "a1"),
    ]
    t = [s.at_ms for s in script.steps]
    assert t[1] - t[0] == 10 * 60_000 and t[5] - t[4] == 30 * 60_000
    assert script.steps[4].body == {
        "reason": "rehearsal: budget (script action 1)",
        "kind": "budget",
        "delta_fen": -500,
        "days": ["2025-02-13", "2025-02-14"],
    }
    assert script.actions[1].at == "10:05:30"


def test_the_documented_example_loads_for_the_seed_campaign() -> None:
    from lijian.inputs import load_settings_file

    settings = load_settings_file(CAMPAIGN_FILE)
    windows = campaign_windows(settings, SimConfig(days=7))
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "rehearsal.toml"
    script = load_script(example, windows, settings.tz, simulation_end_ms(settings, windows))
    assert [a.kind for a in script.actions] == ["pause", "block", "budget", "lift", "end"]
    assert [s.op for s in script.steps] == [
        "pause", "resume", "block", "propose", "approve", "lift", "propose", "approve",
    ]  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIJIAN, *args], capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip


def test_the_cli_refuses_a_bad_script_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(action(day=99, at="10:05", do="pause"), "utf-8")
    out = tmp_path / "o"
    r = run_cli("simulate", "--campaign", str(CAMPAIGN_FILE), "--script", str(bad), "--days",
                "2", "--out", str(out))  # fmt: skip
    assert "Traceback" not in r.stderr + r.stdout
    assert (r.returncode, r.stderr) == (
        2,
        f"lijian simulate: {bad}: action 1: day must be an integer in [1, 2]\n",
    )
    assert not out.exists(), "nothing was simulated"
    r = run_cli("simulate", "--campaign", str(CAMPAIGN_FILE), "--script",
                str(tmp_path / "missing.toml"), "--out", str(out))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == (
        f"lijian simulate: {tmp_path / 'missing.toml'}: cannot read the script: "
        "No such file or directory\n"
    )


def test_the_cli_refuses_a_script_with_forecast_or_bots(tmp_path: Path) -> None:
    ok = tmp_path / "ok.toml"
    ok.write_text(action(day=1, at="10:05", do="pause"), "utf-8")
    common = ("simulate", "--campaign", str(CAMPAIGN_FILE), "--script", str(ok), "--out",
              str(tmp_path / "o"))  # fmt: skip
    for extra, line in (
        ("--forecast", "lijian simulate: --script runs requests; it does not go with --forecast"),
        ("--compare-release", "lijian simulate: --script does not go with --bots"),
    ):
        r = run_cli(*common, extra)
        assert "Traceback" not in r.stderr + r.stdout
        assert (r.returncode, r.stderr) == (2, line + "\n")
    assert not (tmp_path / "o").exists()


def test_the_cli_runs_a_rehearsal_and_reports_it(tmp_path: Path) -> None:
    script = tmp_path / "rehearsal.toml"
    script.write_text(
        action(day=1, at="10:02", do="pause", for_min=5)
        + action(day=2, at="11:00", do="budget", delta_fen=1_000_000, days="today"),
        "utf-8",
    )
    out = tmp_path / "o"
    r = run_cli("simulate", "--campaign", str(CAMPAIGN_FILE), "--script", str(script),
                "--persons", "2000", "--days", "2", "--catalog-skus", "200",
                "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "operator actions: effect per day" in r.stdout
    assert "approve by sim-operator-2: 200 am_000001" in r.stdout
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    steps = summary["rehearsal"]["steps"]
    assert [(s["op"], s["status"]) for s in steps] == [
        ("pause", 200), ("resume", 200), ("propose", 201), ("approve", 200),
    ]  # fmt: skip
    before, after = steps[3]["before"], steps[3]["after"]
    day = "2025-02-13"
    assert after["days"][day]["released_fen"] - before["days"][day]["released_fen"] == 1_000_000
    pause = summary["rehearsal"]["windows"][0]
    assert (
        pause["grants"] == 0
        and pause["declines_by_reason"]["campaign_paused"]
        == pause["arrivals"]
        == summary["days"][0]["declines_by_reason"]["campaign_paused"]
        > 0
    )
    assert "Operator actions (rehearsal)" in (out / "report.html").read_text("utf-8")
    assert "lijian audit" in r.stdout and "ok" in r.stdout
