"""The verification code printed in docs/FAIRNESS.md computes the engine's draw."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lijian.core.draw import commitment, draw_order

DOC = Path(__file__).resolve().parents[2] / "docs" / "FAIRNESS.md"


def doc_code() -> dict[str, Any]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    code = next(b for b in blocks if "def draw_order" in b)
    names: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), names)
    return names


DOCUMENTED = doc_code()


@given(
    st.lists(st.sampled_from(["p-1", "p-2", "p-3", "成都-4"]), max_size=30),
    st.binary(min_size=32, max_size=32),
)
def test_the_documented_draw_is_the_engines(keys, seed_bytes):
    seed = seed_bytes.hex()
    assert DOCUMENTED["draw_order"](seed, "chengdu-2025-spring", "2025-02-12", keys) == (
        draw_order(seed, "chengdu-2025-spring", "2025-02-12", keys)
    )
    assert DOCUMENTED["check_commitment"](seed, commitment(seed))
    other = "1" * 64 if seed != "1" * 64 else "2" * 64
    assert not DOCUMENTED["check_commitment"](seed, commitment(other))
