"""NDJSON lines read as they arrive, whatever the chunk boundaries (no server needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from searcher.http.ndjson import numbered_lines


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in zip(points, points[1:], strict=False):
        yield data[start:end]


def _read(data: bytes, cuts: list[int], limit: int = 1000) -> list[tuple[int, bytes | None]]:
    async def collect() -> list[tuple[int, bytes | None]]:
        return [item async for item in numbered_lines(_chunks(data, cuts), limit)]

    return asyncio.run(collect())


def test_lines_are_numbered_as_written_and_blank_ones_skipped() -> None:
    assert _read(b'{"a": 1}\n\n  \n{"b": 2}\r\n{"c": 3}', [3, 11]) == [
        (1, b'{"a": 1}'),
        (4, b'{"b": 2}'),
        (5, b'{"c": 3}'),
    ]


def test_a_line_over_the_limit_is_reported_and_the_next_ones_read() -> None:
    data = b"short\n" + b"x" * 50 + b"\nafter\n"
    for cuts in ([], [8], [8, 20, 40], list(range(0, 70, 3))):
        assert _read(data, cuts, limit=10) == [(1, b"short"), (2, None), (3, b"after")], cuts


@given(
    st.lists(st.text(alphabet="ab{} ", max_size=12), max_size=8), st.lists(st.integers(0, 200), max_size=6)
)
def test_chunk_boundaries_never_change_the_lines(lines: list[str], cuts: list[int]) -> None:
    data = "\n".join(lines).encode()
    expected = [(n, line.strip().encode()) for n, line in enumerate(lines, start=1) if line.strip()]
    assert _read(data, cuts) == expected
