"""The streaming catalogue parser: line numbers across chunks, blank lines, fast and
exact paths agree."""

from __future__ import annotations

import json

import pytest

from lijian.http.ndjson import LINE_BYTES_MAX, CatalogParser


def parse(data: bytes, chunk_bytes: int) -> CatalogParser:
    p = CatalogParser(lines_max=1_000)
    for i in range(0, len(data), chunk_bytes):
        p.feed(data[i : i + chunk_bytes])
    p.close()
    return p


def line(sku: str, platform: str = "jd", category: str = "fresh_food") -> bytes:
    return json.dumps({"sku": sku, "category": category, "platform": platform}).encode()


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_rows_and_first_lines_whatever_the_chunking(chunk_bytes: int) -> None:
    data = b"\n".join(
        [line("a"), b"", line("b", "vip"), b"   ", line("c", category="beauty_skincare")]
    )  # no trailing newline: the last line still counts
    p = parse(data, chunk_bytes)
    assert p.error is None
    assert p.rows == [
        ("jd", "a", "fresh_food"),
        ("vip", "b", "fresh_food"),
        ("jd", "c", "beauty_skincare"),
    ]
    assert p.platforms == {"jd": 1, "vip": 3}
    assert p.categories == {"fresh_food": 1, "beauty_skincare": 5}


@pytest.mark.parametrize("chunk_bytes", [5, 1 << 20])
@pytest.mark.parametrize(
    ("bad", "field", "malformed"),
    [
        (b'{"sku": "x"', "$", True),
        (b'{"sku": "x", "category": "c"}', "platform", False),
        (b'{"sku": "x", "category": "c", "platform": "jd"} {"sku": "y"}', "$", True),
        (b"[]", "$", False),
    ],
)
def test_the_first_bad_line_is_named(
    chunk_bytes: int, bad: bytes, field: str, malformed: bool
) -> None:
    data = b"\n".join([line("a"), b"", bad, line("d")]) + b"\n"
    p = parse(data, chunk_bytes)
    assert p.error is not None
    assert (p.error.line, p.error.field, p.error.malformed) == (3, field, malformed)
    assert p.rows == []


def test_an_endless_line_is_refused_without_buffering_it() -> None:
    p = CatalogParser()
    p.feed(line("a") + b"\n" + b"x" * (LINE_BYTES_MAX + 1))
    assert p.error is not None and p.error.line == 2


def test_the_line_limit() -> None:
    p = parse(b"\n".join(line(f"s{i}") for i in range(1_001)) + b"\n", 1 << 20)
    assert p.error is not None and p.error.line == 1_001
