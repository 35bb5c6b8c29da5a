"""Chunking: windows cover every token, neighbours share exactly ``overlap`` tokens, offsets hold."""

from __future__ import annotations

import re

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from indexer.chunking import chunk_text, token_windows, validate_window
from indexer.errors import InvalidArgument, InvalidCollectionSpec


def word_offsets(text: str) -> list[tuple[int, int]]:
    """One token per word: a stand-in for a tokenizer's offset mapping."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_windows_advance_by_window_minus_overlap_and_end_at_the_last_token():
    assert token_windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert token_windows(9, 4, 1) == [(0, 4), (3, 7), (6, 9)]
    assert token_windows(5, 4, 0) == [(0, 4), (4, 5)]


def test_short_and_empty_inputs():
    assert token_windows(3, 8, 2) == [(0, 3)]
    assert token_windows(8, 8, 2) == [(0, 8)]
    assert token_windows(0, 8, 2) == []
    assert chunk_text("", [], 8, 2) == []


def test_a_short_text_is_one_chunk_spanning_its_tokens():
    text = "  Fresh bread at seven.  "
    (chunk,) = chunk_text(text, word_offsets(text), window=16, overlap=4)
    assert (chunk.ordinal, chunk.start, chunk.end) == (0, 2, 23)
    assert chunk.text == "Fresh bread at seven."


def test_chunks_keep_character_offsets_into_the_text():
    text = "one two three four five six seven"
    chunks = chunk_text(text, word_offsets(text), window=3, overlap=1)
    assert [c.text for c in chunks] == ["one two three", "three four five", "five six seven"]
    assert [c.ordinal for c in chunks] == [0, 1, 2]
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_overlapping_and_empty_subword_spans_are_covered_by_the_hull():
    # SentencePiece gives a lone "▁" the span of the piece after it: (4, 5) then (4, 7).
    text = "The kettle"
    offsets = [(0, 3), (4, 5), (4, 7), (7, 8), (8, 10)]
    chunks = chunk_text(text, offsets, window=2, overlap=0)
    assert [c.text for c in chunks] == ["The k", "kett", "le"]


@pytest.mark.parametrize(("window", "overlap"), [(4, 4), (4, 5), (0, 0), (4, -1)])
def test_window_must_exceed_a_non_negative_overlap(window, overlap):
    with pytest.raises(InvalidCollectionSpec):
        validate_window(window, overlap)
    with pytest.raises(InvalidCollectionSpec):
        chunk_text("a b c", word_offsets("a b c"), window, overlap)


def test_offsets_outside_the_text_are_rejected():
    with pytest.raises(InvalidArgument, match="token 1"):
        chunk_text("abc", [(0, 1), (2, 9)], 4, 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60), st.integers(1, 12), st.data())
def test_every_token_is_covered_and_overlaps_are_exact(token_count, window, data):
    overlap = data.draw(st.integers(0, window - 1))
    windows = token_windows(token_count, window, overlap)
    covered = sorted({t for first, last in windows for t in range(first, last)})
    assert covered == list(range(token_count))
    assert all(0 < last - first <= window for first, last in windows)
    for (_, last_a), (first_b, _) in zip(windows, windows[1:], strict=False):
        assert last_a - first_b == overlap
    if windows:
        assert windows[0][0] == 0 and windows[-1][1] == token_count


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text("abcxyz", min_size=1, max_size=6), max_size=40),
    st.integers(1, 8),
    st.data(),
)
def test_chunk_text_round_trips_through_offsets(words, window, data):
    overlap = data.draw(st.integers(0, window - 1))
    text = " ".join(words)
    offsets = word_offsets(text)
    chunks = chunk_text(text, offsets, window, overlap)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # Every word appears inside some chunk's span.
    for start, end in offsets:
        assert any(c.start <= start and end <= c.end for c in chunks)
