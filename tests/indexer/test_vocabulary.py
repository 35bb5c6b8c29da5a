"""How much of a text its model can read: hand-computed cases, then real tokenizers of two kinds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.config import EncoderConfig
from indexer.encoder import Encoder
from indexer.records import CollectionSpec
from indexer.vocabulary import MOSTLY_UNKNOWN, is_mostly_unknown, unknown_share

UNK = 1
THREE_SCRIPTS = ("مرحبا بالعالم، كيف حالك اليوم؟", "東京は日本の首都です。", "🎉🔥😀🎈")


def test_the_share_counts_characters_under_unknown_pieces_and_ignores_spaces() -> None:
    # "ab ĉĉ": pieces "ab" (known), "▁" (empty span), "ĉĉ" (unknown): 2 of 4 non-space characters.
    assert unknown_share("ab ĉĉ", [7, 9, UNK], [(0, 2), (3, 3), (3, 5)], UNK) == 0.5
    assert unknown_share("ab", [7], [(0, 2)], UNK) == 0.0
    assert unknown_share("   ", [], [], UNK) == 0.0
    assert unknown_share("ĉ", [UNK], [(0, 1)], None) == 0.0  # a tokenizer without an unknown piece


def test_the_unknown_piece_is_the_tokenizers_own_id() -> None:
    assert unknown_share("xy", [3], [(0, 2)], 3) == 1.0
    assert unknown_share("xy", [3], [(0, 2)], UNK) == 0.0


def test_mostly_means_more_than_the_threshold() -> None:
    assert not is_mostly_unknown(MOSTLY_UNKNOWN)
    assert is_mostly_unknown(MOSTLY_UNKNOWN + 0.01)


@pytest.mark.parametrize("family", ["albert", "bert-base-cased"])
def test_other_scripts_are_mostly_unknown_to_a_sentencepiece_and_a_wordpiece_vocabulary(
    family: str,
    tiny_albert_dir: Path,
    build_tiny_checkpoint: Callable[[str, Path], Path],
    tmp_path: Path,
) -> None:
    folder = tiny_albert_dir if family == "albert" else build_tiny_checkpoint(family, tmp_path / family)
    encoder = Encoder.load(str(folder), CollectionSpec(model=str(folder)), EncoderConfig())
    english = "The kettle clicked off just as the rain started."
    shares = encoder.unknown_shares([english, *THREE_SCRIPTS])
    assert shares[0] < 0.1
    assert all(is_mostly_unknown(share) for share in shares[1:]), shares
