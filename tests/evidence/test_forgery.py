"""Whoever holds the evidence key cannot rewrite a day unseen: the rows are bound to the
chain entries, the entries to the head the public feed published. And ``verify`` on
crafted files answers one line and an exit code, never a traceback."""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lijian.evidence.bundle import bundle_bytes, sign
from lijian.evidence.keys import load_private, load_public
from lijian.evidence.verify import BundleUnreadable, verify_file
from tests.evidence import test_bundle
from tests.evidence.ledger_days import DAY1, DAY2
from tests.evidence.test_bundle import copy, pub, run

made = test_bundle.made  # the module's ledger, key pair and bundles (a fixture)


def resign(made, path: Path, doc: dict) -> None:
    path.write_bytes(bundle_bytes(sign(doc, load_private(made[0] / "keys" / "evidence.key"))))


def settle_again(doc: dict) -> None:
    """What a forger does after changing rows: the settlement made to follow them."""
    fields = ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen")
    rows: dict[str, dict[str, int]] = {}
    for r in doc["redemptions"]:
        row = rows.setdefault(r["platform"], dict.fromkeys(fields, 0))
        row["count"] += 1
        row["gmv_fen"] += r["payable_fen"]
        row["discount_fen"] += r["discount_fen"]
    for f in doc["refunds"]:
        rows.setdefault(f["platform"], dict.fromkeys(fields, 0))["clawback_fen"] += f[
            "clawback_fen"
        ]
    for p in doc["settlement"]["platforms"]:
        p.update(rows.get(p["platform"], dict.fromkeys(fields, 0)))
        p["net_subsidy_fen"] = p["discount_fen"] - p["clawback_fen"]
    doc["settlement"]["totals"] = {
        k: sum(p[k] for p in doc["settlement"]["platforms"]) for k in fields
    }


def test_a_dropped_row_with_the_settlement_redone_and_re_signed_fails(made, tmp_path):
    b = copy(made, tmp_path)
    for day in (DAY1, DAY2):
        doc = json.loads(b[day].read_bytes())
        dropped = doc["redemptions"].pop(0)
        settle_again(doc)
        resign(made, b[day], doc)
        expected = f"FAIL rows: redemption {dropped['id']} was captured on {day} (entries)"
        for extra in ([], ["--previous", b[DAY1]] if day == DAY2 else []):
            r = run("verify", b[day], "--pubkey", pub(made), *extra)
            assert r.returncode == 1, r.stdout
            assert expected in r.stderr and "FAIL settlement" not in r.stderr
            assert "FAIL signature" not in r.stderr and "Traceback" not in r.stderr


def test_a_rewritten_row_with_the_settlement_redone_and_re_signed_fails(made, tmp_path):
    b = copy(made, tmp_path)
    doc = json.loads(b[DAY1].read_bytes())
    row = doc["redemptions"][0]
    row["discount_fen"] += 1_000
    settle_again(doc)
    resign(made, b[DAY1], doc)
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert f"FAIL rows: redemption {row['id']} is not as its entries say" in r.stderr.splitlines()
    assert "FAIL settlement" not in r.stderr


def test_an_invented_row_fails(made, tmp_path):
    b = copy(made, tmp_path)
    doc = json.loads(b[DAY1].read_bytes())
    fake = {**doc["redemptions"][0], "id": "rd_z0000000099", "order_id": "O-fake"}
    doc["redemptions"].append(fake)
    settle_again(doc)
    resign(made, b[DAY1], doc)
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert "FAIL rows: redemption rd_z0000000099 is listed but its entries say otherwise" in (
        r.stderr
    )


def test_dropping_the_entries_too_breaks_the_chain_and_a_new_chain_the_published_head(
    made, tmp_path
):
    from lijian.core.chain import link_all
    from lijian.core.entries import HoldCaptured, decode

    b = copy(made, tmp_path)
    doc = json.loads(b[DAY1].read_bytes())
    published = doc["chain"]["head"]
    dropped = doc["redemptions"].pop(0)
    settle_again(doc)
    kept = [x for x in doc["entries"]
            if not (isinstance(e := decode(bytes.fromhex(x)), HoldCaptured)
                    and e.redemption_id == dropped["id"])]  # fmt: skip
    assert len(kept) == len(doc["entries"]) - 1
    doc["entries"] = kept
    resign(made, b[DAY1], doc)
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert "FAIL chain: the entries do not hash from from_head to head" in r.stderr
    # The forger recomputes the head as well: it is no longer the one published, nor the
    # one the next day's bundle starts from.
    start = bytes.fromhex(doc["chain"]["from_head"])
    doc["chain"]["head"] = link_all(start, [bytes.fromhex(x) for x in kept])[-1].hex()
    resign(made, b[DAY1], doc)
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 0, r.stderr  # alone, a whole forged range is self-consistent
    r = run("verify", b[DAY1], "--pubkey", pub(made), "--head", published)
    assert r.returncode == 1 and "is not the published" in r.stderr
    r = run("verify", b[DAY2], "--pubkey", pub(made), "--previous", b[DAY1])
    assert r.returncode == 1 and "FAIL chain: does not continue the previous bundle" in r.stderr


def test_crafted_files_get_one_line_and_a_documented_code(made, tmp_path):
    b = copy(made, tmp_path)
    raw = b[DAY1].read_bytes()
    cases = {
        "truncated": (raw[: len(raw) // 2], 1, "FAIL format: not JSON"),
        "not json": (b"\xff\xfe garbage", 1, "FAIL format: not JSON"),
        "a list": (
            b"[1, 2, 3]\n",
            1,
            "FAIL format: not a lijian-evidence/3 or lijian-evidence/2 bundle",
        ),
        "deep": (b"[" * 100_000 + b"]" * 100_000, 1, "FAIL format: not JSON"),
    }
    doc = json.loads(raw)
    wrong = json.loads(raw)
    wrong["redemptions"][0]["payable_fen"] = "24800"
    cases["a string for a number"] = (bundle_bytes(wrong), 1, "FAIL format: malformed")
    huge = json.loads(raw)
    huge["chain"]["to_seq"] = 10**400
    cases["a huge number"] = (bundle_bytes(huge), 1, "FAIL signature: does not verify")
    del doc["entries"]
    cases["a missing field"] = (bundle_bytes(doc), 1, "FAIL format: malformed")
    for name, (content, code, line) in cases.items():
        p = tmp_path / f"{name}.json"
        p.write_bytes(content)
        r = run("verify", p, "--pubkey", pub(made))
        assert r.returncode == code, (name, r.stderr)
        assert r.stderr.startswith(line), (name, r.stderr)
        assert "Traceback" not in r.stderr, name
    r = run("verify", tmp_path / "absent.json", "--pubkey", pub(made))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read" in r.stderr
    r = run("verify", b[DAY1], "--pubkey", b[DAY1])
    assert r.returncode == 2 and "Traceback" not in r.stderr


_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True), st.text(string.printable, max_size=80),
)  # fmt: skip
_VALUES = st.recursive(
    _LEAVES,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4),
       value=_VALUES, cut=st.integers(min_value=0, max_value=2_000))  # fmt: skip
def test_verify_never_raises_on_a_mutated_bundle(made, tmp_path, path, value, cut):
    """Any one value anywhere replaced (or the file cut): a verdict, never an exception."""
    good = copy(made, tmp_path)[DAY1]
    doc = json.loads(good.read_bytes())
    node = doc
    for step in path[:-1]:  # walk down to some container, then replace one of its items
        kids = list(node) if isinstance(node, dict) else node
        if not isinstance(node, dict | list) or not kids:
            break
        k = kids[step % len(kids)]
        nxt = node[k] if isinstance(node, dict) else k
        if not isinstance(nxt, dict | list):
            break
        node = nxt
    if isinstance(node, dict) and node:
        node[list(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    data = json.dumps(doc, allow_nan=True).encode()
    p = tmp_path / "mutated.json"
    p.write_bytes(data[: len(data) - cut] if cut % 3 == 0 else data)
    key = load_public(made[0] / "keys" / "evidence.pub")
    try:
        verdict = verify_file(p, key, previous=good)
    except BundleUnreadable:
        return
    assert isinstance(verdict.failures, list)
