"""A rehearsal script: operator actions at set times of a simulated campaign.

``lijian simulate --script FILE`` (TOML, or JSON if the name ends in ``.json``) lists
actions as an operator would take them during the season::

    [[action]]
    day = 2              # the campaign's 2nd day (1 = the first simulated day)
    at = "10:05"         # local time, HH:MM or HH:MM:SS
    do = "pause"
    for_min = 10         # resume 10 minutes later

Each action becomes one or more *steps*, each one call of the engine's operator path
(``Engine.operate``, what the HTTP API calls): ``pause`` → pause (and a resume after
``for_min``); ``budget`` → a proposal by ``by`` and its approval by ``approved_by``
(four eyes, ``approve_after_min`` later); ``end`` → the same for ending early;
``block`` → a block (and a lift after ``for_min``); ``lift`` → the lift of a block
an earlier action named by ``id``. This module only parses and checks the file; what a
step does to money is decided by the engine (:mod:`lijian.sim.rehearsal` runs them).

Bounded: the file is at most ``SCRIPT_MAX_BYTES``, at most ``ACTIONS_MAX`` actions, and
every value is checked before the run starts, so a mistake costs one line on stderr,
not a half-run simulation.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from lijian.core.errors import InvalidRequest
from lijian.core.money import format_cny
from lijian.core.schedule import TrancheWindow
from lijian.core.steering import DELTA_MAX_FEN, ID_MAX_CHARS, REASON_MAX_CHARS, check_text
from lijian.jsonish import Json

SCRIPT_MAX_BYTES = 64 * 1024
ACTIONS_MAX = 200
MINUTES_MAX = 7 * 24 * 60  # for_min, approve_after_min: a week at most
PROPOSER = "sim-operator-1"  # the default operator keys of a rehearsal: two, for four eyes
APPROVER = "sim-operator-2"
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ScriptError(ValueError):
    """A script that cannot be run: the message is one line, for stderr (exit 2)."""


class ActionKind(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    BUDGET = "budget"
    END = "end"
    BLOCK = "block"
    LIFT = "lift"


class BlockTarget(StrEnum):
    """Who or what a block action blocks: named, or chosen from the ledger by a rule
    when the action runs (so a script can say "the top redeemer" without knowing who)."""

    PERSON = "person"  # ``person = "p0001234"``
    TOP_PERSON = "top_person"  # the most redemptions so far (optionally of ``kind``)
    SKU = "sku"  # ``platform`` and ``sku``
    TOP_SKU = "top_sku"  # the SKU in the most redemptions so far


class StepOp(StrEnum):
    """The engine's operations (lijian.operations.OPERATIONS) a step calls."""

    PAUSE = "pause"
    RESUME = "resume"
    PROPOSE = "propose"
    APPROVE = "approve"
    BLOCK = "block"
    LIFT = "lift"


@dataclass(frozen=True, slots=True)
class Action:
    """One action of the script, as written (for the report)."""

    index: int  # 1-based, in file order
    day: int
    date: str
    at: str  # local HH:MM:SS
    kind: ActionKind
    label: str  # ``id``, or "a<index>"
    text: str  # what it does, in words


@dataclass(frozen=True, slots=True)
class Step:
    """One engine call at ``at_ms``. ``after`` names the step whose answer gives the
    amendment or block id this one acts on (an approval, a lift)."""

    at_ms: int
    action: int  # Action.index
    op: StepOp
    by: str
    body: Json
    name: str  # unique: "<label>" or "<label>:approve", "<label>:resume", …
    after: str | None = None
    target: BlockTarget | None = None
    person_kind: str | None = None  # TOP_PERSON among persons of this kind only


@dataclass(slots=True)
class Script:
    actions: list[Action] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)  # by (time, file order)

    @property
    def first_ms(self) -> int | None:
        return self.steps[0].at_ms if self.steps else None


_COMMON = {"day", "at", "do", "reason", "by", "id"}
_KEYS: dict[ActionKind, set[str]] = {
    ActionKind.PAUSE: {"for_min"},
    ActionKind.RESUME: set(),
    ActionKind.BUDGET: {"delta_fen", "days", "approved_by", "approve_after_min"},
    ActionKind.END: {"last_day", "approved_by", "approve_after_min"},
    ActionKind.BLOCK: {"target", "person", "kind", "platform", "sku", "for_min"},
    ActionKind.LIFT: {"block"},
}
PERSON_KINDS = ("resident", "outsider", "spoofer")  # lijian.sim.population.PersonKind


def read_script_file(path: Path) -> list[Json]:
    """The list of actions of a TOML (``[[action]]``) or JSON (``{"action": […]}``) file."""
    try:
        size = path.stat().st_size
        if size > SCRIPT_MAX_BYTES:
            raise ScriptError(f"the script is {size} bytes; at most {SCRIPT_MAX_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"cannot read the script: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ScriptError(f"not valid {kind}: {first}") from None
    if not isinstance(doc, dict) or set(doc) - {"action"}:
        raise ScriptError('the script holds only a list "action" of actions')
    actions = doc.get("action", [])
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise ScriptError('"action" must be a list of tables ([[action]] in TOML)')
    if len(actions) > ACTIONS_MAX:
        raise ScriptError(f"the script has {len(actions)} actions; at most {ACTIONS_MAX}")
    return actions


def load_script(path: Path, windows: list[TrancheWindow], tz: dt.tzinfo, end_ms: int) -> Script:
    """Parse and check a script against the simulated days (``windows``); the simulation
    ends at ``end_ms``, and every step must fall before it."""
    return parse_script(read_script_file(path), windows, tz, end_ms)


def parse_script(
    raw: list[Json], windows: list[TrancheWindow], tz: dt.tzinfo, end_ms: int
) -> Script:
    out = Script()
    labels: dict[str, ActionKind] = {}
    for i, a in enumerate(raw, 1):
        try:
            action, steps = _parse_action(i, a, windows, tz, labels)
        except (ScriptError, InvalidRequest) as exc:
            msg = exc.detail if isinstance(exc, InvalidRequest) else str(exc)
            raise ScriptError(f"action {i}: {msg}") from None
        for s in steps:
            if s.at_ms >= end_ms:
                raise ScriptError(f"action {i}: its {s.op} would fall after the simulation ends")
        labels[action.label] = action.kind
        out.actions.append(action)
        out.steps.extend(steps)
    # A stable sort: steps at the same moment run in file order (a proposal before its
    # own approval at approve_after_min = 0, whatever came before).
    out.steps.sort(key=lambda s: s.at_ms)
    _check_order(out.steps)
    return out


def _check_order(steps: list[Step]) -> None:
    """A step acting on another's result comes after it (not merely later in the file)."""
    done: set[str] = set()
    for s in steps:
        if s.after is not None and s.after not in done:
            raise ScriptError(f"action {s.action}: {s.op} comes before {s.after!r} it acts on")
        done.add(s.name)


def _int(a: Json, key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = a.get(key, default)
    if v is None:
        raise ScriptError(f"{key} is required")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ScriptError(f"{key} must be an integer in [{lo}, {hi}]")
    return v


def _text(a: Json, key: str, default: str, max_chars: int = ID_MAX_CHARS) -> str:
    return check_text(a.get(key, default), key, max_chars)


def _parse_action(
    i: int,
    a: Json,
    windows: list[TrancheWindow],
    tz: dt.tzinfo,
    labels: dict[str, ActionKind],
) -> tuple[Action, list[Step]]:
    do = a.get("do")
    if not isinstance(do, str) or do not in ActionKind.__members__.values():
        known = ", ".join(k.value for k in ActionKind)
        raise ScriptError(f"unknown action do = {str(do)[:40]!r} (one of {known})")
    kind = ActionKind(do)
    unknown = set(a) - _COMMON - _KEYS[kind]
    if unknown:
        raise ScriptError(f"{kind}: unknown key {sorted(unknown)[0]!r}")
    day = _int(a, "day", 1, len(windows))  # a day of the simulated campaign
    w = windows[day - 1]
    at = a.get("at")
    m = _TIME.fullmatch(at) if isinstance(at, str) else None
    hh, mm, ss = (int(m[1]), int(m[2]), int(m[3] or 0)) if m else (99, 0, 0)
    if m is None or hh > 23 or mm > 59 or ss > 59:
        raise ScriptError(f"at must be a local time HH:MM or HH:MM:SS, not {str(at)[:20]!r}")
    local = dt.datetime.combine(w.date, dt.time(hh, mm, ss), tz)
    t_ms = int(local.timestamp() * 1000)
    label = a.get("id", f"a{i}")
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ScriptError("id must be 1-64 letters, digits, '_', '.' or '-'")
    if label in labels:
        raise ScriptError(f"id {label!r} is used by an earlier action")
    by = _text(a, "by", PROPOSER)
    reason = _text(a, "reason", f"rehearsal: {kind} (script action {i})", REASON_MAX_CHARS)
    body: Json = {"reason": reason}
    steps: list[Step] = []
    text = ""
    if kind in (ActionKind.PAUSE, ActionKind.RESUME):
        steps.append(Step(t_ms, i, StepOp(kind.value), by, body, label))
        text = kind.value
        if kind == ActionKind.PAUSE and "for_min" in a:
            n = _int(a, "for_min", 1, MINUTES_MAX)
            back: Json = {"reason": f"rehearsal: end of the {n}-minute pause (script action {i})"}
            steps.append(Step(t_ms + n * 60_000, i, StepOp.RESUME, by, back, label + ":resume"))
            text = f"pause for {n} min"
    elif kind in (ActionKind.BUDGET, ActionKind.END):
        approver = _text(a, "approved_by", APPROVER)
        wait = _int(a, "approve_after_min", 0, MINUTES_MAX, 0)
        if kind == ActionKind.BUDGET:
            delta = _int(a, "delta_fen", -DELTA_MAX_FEN, DELTA_MAX_FEN)
            if delta == 0:
                raise ScriptError("delta_fen must not be 0")
            days = _days(a.get("days", "remaining"), w, windows)
            body |= {"kind": "budget", "delta_fen": delta, "days": days}
            shown = days if isinstance(days, str) else ", ".join(days)
            text = f"budget {'+' if delta > 0 else ''}{format_cny(delta)} CNY over {shown}"
        else:
            last = _int(a, "last_day", 1, len(windows))
            body |= {"kind": "end", "last_date": windows[last - 1].date.isoformat()}
            text = f"end after day {last} ({body['last_date']})"
        text += f", proposed by {by}, approved by {approver}"
        text += f" {wait} min later" if wait else ""
        steps.append(Step(t_ms, i, StepOp.PROPOSE, by, body, label))
        ok: Json = {"reason": f"rehearsal: approval of script action {i}"}
        steps.append(
            Step(t_ms + wait * 60_000, i, StepOp.APPROVE, approver, ok, label + ":approve", label)
        )
    elif kind == ActionKind.BLOCK:
        step, text = _block_step(a, t_ms, i, by, body, label)
        steps.append(step)
        if "for_min" in a:
            n = _int(a, "for_min", 1, MINUTES_MAX)
            lift: Json = {"reason": f"rehearsal: end of the {n}-minute block (script action {i})"}
            steps.append(Step(t_ms + n * 60_000, i, StepOp.LIFT, by, lift, label + ":lift", label))
            text += f" for {n} min"
    else:
        target = a.get("block")
        if not isinstance(target, str) or labels.get(target) != ActionKind.BLOCK:
            raise ScriptError("lift: block must name the id of an earlier block action")
        steps.append(Step(t_ms, i, StepOp.LIFT, by, body, label, target))
        text = f"lift the block of {target}"
    at_text = f"{hh:02d}:{mm:02d}:{ss:02d}"
    return Action(i, day, w.date.isoformat(), at_text, kind, label, text), steps


def _days(value: object, w: TrancheWindow, windows: list[TrancheWindow]) -> str | list[str]:
    """ "remaining", "today" (the action's day) or a sorted list of day numbers."""
    if value == "remaining":
        return "remaining"
    if value == "today":
        return [w.date.isoformat()]
    if not isinstance(value, list) or not value or len(value) > len(windows):
        raise ScriptError('days must be "remaining", "today" or a list of day numbers')
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= len(windows):
            raise ScriptError(f"days: each day is a number in [1, {len(windows)}]")
    if sorted(set(value)) != value:
        raise ScriptError("days must be sorted, each day once")
    return [windows[v - 1].date.isoformat() for v in value]


def _block_step(a: Json, t_ms: int, i: int, by: str, body: Json, label: str) -> tuple[Step, str]:
    raw = a.get("target")
    if not isinstance(raw, str) or raw not in BlockTarget.__members__.values():
        known = ", ".join(t.value for t in BlockTarget)
        raise ScriptError(f"block: target must be one of {known}")
    target = BlockTarget(raw)
    allowed = {
        BlockTarget.PERSON: {"person"},
        BlockTarget.TOP_PERSON: {"kind"},
        BlockTarget.SKU: {"platform", "sku"},
        BlockTarget.TOP_SKU: set(),
    }[target]
    extra = {"person", "kind", "platform", "sku"} & set(a) - allowed
    if extra:
        raise ScriptError(f"block: {sorted(extra)[0]!r} does not go with target = {target.value!r}")
    person_kind = None
    if target == BlockTarget.PERSON:
        body = body | {"kind": "person", "person_id": _text(a, "person", "")}
        text = f"block person {body['person_id']}"
    elif target == BlockTarget.SKU:
        sku = _text(a, "sku", "")
        body = body | {"kind": "sku", "platform": _text(a, "platform", ""), "sku": sku}
        text = f"block SKU {body['platform']}/{sku}"
    elif target == BlockTarget.TOP_PERSON:
        kind = a.get("kind")
        if kind is not None and (not isinstance(kind, str) or kind not in PERSON_KINDS):
            raise ScriptError(f"block: kind must be one of {', '.join(PERSON_KINDS)}")
        person_kind = kind
        who = f"{person_kind} " if person_kind else ""
        text = f"block the {who}person with the most redemptions so far"
    else:
        text = "block the SKU in the most redemptions so far"
    return Step(t_ms, i, StepOp.BLOCK, by, body, label, None, target, person_kind), text
