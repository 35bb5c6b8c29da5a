"""Chunking: split a text into overlapping token windows that keep their character offsets.

Pure functions of the text and the tokenizer's offsets. Every token lands in at least one window,
consecutive windows share exactly ``overlap`` tokens and the last window ends at the last token,
so nothing of a document is silently cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.errors import InvalidArgument, InvalidCollectionSpec
from indexer.records import Chunk


def validate_window(window: int, overlap: int) -> None:
    """Raise ``InvalidCollectionSpec`` unless ``window > overlap >= 0``."""
    if overlap < 0:
        raise InvalidCollectionSpec(f"overlap must be >= 0, got {overlap}", field="overlap")
    if window <= overlap:
        raise InvalidCollectionSpec(
            f"window ({window}) must be larger than overlap ({overlap}) so that windows advance",
            field="window",
        )


def token_windows(token_count: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Half-open token ranges ``[first, last)`` covering ``token_count`` tokens.

    Windows advance by ``window - overlap``; the last one stops at the last token and may be
    shorter than ``window`` (it still holds at least one token no earlier window had).
    """
    validate_window(window, overlap)
    windows: list[tuple[int, int]] = []
    first = 0
    while first < token_count:
        last = min(first + window, token_count)
        windows.append((first, last))
        if last == token_count:
            break
        first += window - overlap
    return windows


def window_input(
    prefix: Sequence[int], title: Sequence[int], window: Sequence[int], suffix: Sequence[int], max_length: int
) -> list[int]:
    """The token ids one window is embedded from: ``prefix + title + window + suffix``.

    The title gives every window its document's topic, but the window is what the chunk holds:
    when both do not fit in ``max_length``, the title is cut from its end and every token of
    the window is kept (a window never exceeds ``max_length`` less the special tokens).
    """
    room = max(max_length - len(prefix) - len(window) - len(suffix), 0)
    return [*prefix, *title[:room], *window, *suffix]


def chunk_text(
    text: str, offsets: Sequence[tuple[int, int]], window: int, overlap: int
) -> list[Chunk]:
    """Chunks of ``text`` of at most ``window`` tokens, ``overlap`` tokens shared by neighbours.

    offsets: one ``(start, end)`` character span per token of ``text``, special tokens excluded,
        in token order (what a fast tokenizer returns with ``return_offsets_mapping``).
    A text without tokens gives ``[]``; whether that is acceptable is the caller's decision.
    """
    validate_window(window, overlap)
    _check_offsets(text, offsets)
    chunks = []
    for ordinal, (first, last) in enumerate(token_windows(len(offsets), window, overlap)):
        # Subword spans may overlap or be empty (SentencePiece's lone "▁"), so take the hull.
        spans = offsets[first:last]
        start = min(span[0] for span in spans)
        end = max(span[1] for span in spans)
        chunks.append(Chunk(ordinal=ordinal, start=start, end=end, text=text[start:end]))
    return chunks


def _check_offsets(text: str, offsets: Sequence[tuple[int, int]]) -> None:
    for index, (start, end) in enumerate(offsets):
        if not 0 <= start <= end <= len(text):
            raise InvalidArgument(
                f"token {index} has character span ({start}, {end}) outside a text of "
                f"{len(text)} characters",
                field="offsets",
            )
