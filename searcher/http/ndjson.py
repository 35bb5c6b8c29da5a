"""Newline-delimited JSON read from a request body as it arrives, one bounded line at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def numbered_lines(
    chunks: AsyncIterable[bytes], max_line_bytes: int
) -> AsyncIterator[tuple[int, bytes | None]]:
    """``(line number from 1, line)`` for every non-blank line of ``chunks``; ``None`` for a line
    longer than ``max_line_bytes``, whose bytes are skipped as they arrive (memory holds at most
    one line, and the lines after a long one are still read)."""
    buffer = bytearray()
    number = 0
    skipping = False  # inside a line already reported too long
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).strip()
            start = end + 1
            if skipping:
                skipping = False
                continue
            number += 1
            if len(line) > max_line_bytes:
                yield number, None
            elif line:
                yield number, line
        del buffer[:start]
        if len(buffer) > max_line_bytes and not skipping:
            number += 1
            skipping = True
            yield number, None
        if skipping:
            buffer.clear()
    line = bytes(buffer).strip()
    if line and not skipping:
        yield number + 1, line
