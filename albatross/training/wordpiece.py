"""A unigram ``spiece.model`` that stands in for the teacher's WordPiece vocabulary.

Every WordPiece entry becomes a SentencePiece piece: a word-initial ``t`` becomes ``▁t``, a
continuation ``##x`` becomes ``x``; a single punctuation character becomes both ``▁p`` and ``p``,
because ALBERT's tokenizer does not split at punctuation (``don't`` gives ``▁don ' t``) where
BERT's always does, so the continuation form must mean what the teacher saw: the standalone
``'``.  The 994 ``[unused]`` entries are dropped and the five ALBERT specials take ids 0-4.

Scores are ``len(piece)**2``: the unigram tokenizer picks the segmentation with the highest
score sum, and a sum of squares prefers one long piece over several short ones, the nearest a
unigram model comes to WordPiece's greedy longest match (it cannot reproduce it exactly:
``##ne ##um ##op`` against ``##n ##eum ##o``).  Each piece remembers the teacher id whose
embedding row it takes over.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sentencepiece import sentencepiece_model_pb2 as spm_pb

from albatross.training.vocab import SPECIAL_PIECES

#: ALBERT special piece -> the teacher's WordPiece special, in ALBERT id order.
WORDPIECE_SPECIALS = dict(zip(SPECIAL_PIECES, ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
                              strict=True))
WORD_START = "▁"


@dataclass(frozen=True)
class PieceVocabulary:
    """SentencePiece pieces in id order and, for each, the teacher token id it stands for."""

    pieces: tuple[str, ...]
    teacher_ids: tuple[int, ...]

    def serialised(self) -> bytes:
        """The ``spiece.model`` bytes (a unigram ModelProto in ALBERT's layout)."""
        return unigram_proto(self.pieces).SerializeToString()


def is_punctuation(char: str) -> bool:
    """BERT's notion of punctuation: ASCII symbols and every Unicode ``P*`` category."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def piece_vocabulary(wordpiece: Sequence[str]) -> PieceVocabulary:
    """Pieces for the WordPiece vocabulary ``wordpiece`` (token strings in teacher id order).

    Raises ValueError when one of BERT's five specials is missing.
    """
    index = {token: i for i, token in enumerate(wordpiece)}
    missing = [t for t in WORDPIECE_SPECIALS.values() if t not in index]
    if missing:
        raise ValueError(f"the WordPiece vocabulary lacks the special tokens {missing}")
    chosen: dict[str, int] = {p: index[t] for p, t in WORDPIECE_SPECIALS.items()}
    punctuation: dict[str, int] = {}
    for i, token in enumerate(wordpiece):
        if token in WORDPIECE_SPECIALS.values() or (token.startswith("[") and token.endswith("]")):
            continue
        if token.startswith("##") and len(token) > 2:
            chosen.setdefault(token[2:], i)
            continue
        chosen.setdefault(WORD_START + token, i)
        if len(token) == 1 and is_punctuation(token):
            punctuation[token] = i
    chosen.update(punctuation)  # the standalone punctuation row wins over a rarely seen ``##p``
    return PieceVocabulary(tuple(chosen), tuple(chosen.values()))


def piece_score(piece: str) -> float:
    """Unigram score of a piece: its length (without the word-start mark) squared."""
    return float(len(piece.removeprefix(WORD_START)) ** 2)


def unigram_proto(pieces: Sequence[str]) -> spm_pb.ModelProto:
    """A unigram ModelProto with ``pieces`` in order; the first five must be ALBERT's specials."""
    if tuple(pieces[: len(SPECIAL_PIECES)]) != SPECIAL_PIECES:
        raise ValueError(f"the first pieces must be {SPECIAL_PIECES}, got {tuple(pieces[:5])}")
    proto = spm_pb.ModelProto()
    kinds = {"<pad>": spm_pb.ModelProto.SentencePiece.CONTROL,
             "<unk>": spm_pb.ModelProto.SentencePiece.UNKNOWN}
    for piece in pieces:
        entry = proto.pieces.add()
        entry.piece = piece
        special = piece in SPECIAL_PIECES
        entry.score = 0.0 if special else piece_score(piece)
        entry.type = kinds.get(piece, spm_pb.ModelProto.SentencePiece.CONTROL) if special \
            else spm_pb.ModelProto.SentencePiece.NORMAL
    trainer = proto.trainer_spec
    trainer.model_type = spm_pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(pieces)
    trainer.pad_id, trainer.unk_id, trainer.bos_id, trainer.eos_id = 0, 1, -1, -1
    trainer.pad_piece, trainer.unk_piece = SPECIAL_PIECES[0], SPECIAL_PIECES[1]
    # Lowercasing and accent stripping happen in the Albert tokenizer's own normaliser.
    normaliser = proto.normalizer_spec
    normaliser.name = "identity"
    normaliser.add_dummy_prefix = True
    normaliser.remove_extra_whitespaces = True
    normaliser.escape_whitespaces = True
    return proto
