"""How much of a text its model can read: the share of its characters that fall in unknown pieces.

A text in a script the vocabulary lacks (Arabic, Japanese and emoji under the default model)
tokenizes to a run of the tokenizer's unknown piece, and every such text embeds to nearly the same
vector: three unrelated queries in three scripts once returned one document at 0.9969. Such
documents are still stored, but counted and warned about; such queries get a warning.

Characters, not pieces, because piece counts depend on how a vocabulary splits: SentencePiece
puts a lone ``▁`` before each unknown run and WordPiece gives one ``[UNK]`` per word, so all-Arabic
text is half unknown pieces under one and all under the other, while its characters are all
unknown under both. Whitespace is not counted. The unknown piece is the tokenizer's own
``unk_token_id``, whatever vocabulary the model ships; a tokenizer without one (byte-level BPE)
reads every text.
"""

from __future__ import annotations

from collections.abc import Sequence

# "Mostly": more than half of the text is unreadable. Mixed text ("🎉 party time 🎉", 0.4 with the
# default model) keeps enough readable words to be found by them.
MOSTLY_UNKNOWN = 0.5


def unknown_share(
    text: str, ids: Sequence[int], offsets: Sequence[tuple[int, int]], unk_id: int | None
) -> float:
    """Share of ``text``'s non-space characters covered by unknown pieces, in [0, 1].

    ids, offsets: one token id and one ``(start, end)`` character span per piece of ``text``,
    special tokens excluded (a fast tokenizer's ``input_ids`` and ``offset_mapping``).
    A text with no non-space character gives 0.
    """
    readable = sum(not char.isspace() for char in text)
    if unk_id is None or readable == 0:
        return 0.0
    covered = bytearray(len(text))
    for token, (start, end) in zip(ids, offsets, strict=True):
        if token == unk_id:
            covered[start:end] = b"\x01" * (end - start)
    unknown = sum(1 for index, flag in enumerate(covered) if flag and not text[index].isspace())
    return unknown / readable


def is_mostly_unknown(share: float) -> bool:
    return share > MOSTLY_UNKNOWN


def mostly_unknown_warning(share: float, model: str) -> str:
    """What a user is told about one query or document the model mostly cannot read."""
    return (
        f"{share:.0%} of this text is outside the vocabulary of {model}: its vector says little "
        "about it; lexical search, or a model that reads its language, will find it better"
    )
