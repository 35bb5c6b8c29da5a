"""Build the default encoder from the teacher without training: convert, re-tokenise, factorise.

1. the teacher's WordPiece vocabulary becomes a unigram ``spiece.model`` (``wordpiece.py``);
2. the teacher BertModel is rewritten as an unshared AlbertModel whose word embeddings follow the
   SentencePiece ids (``convert.py``, exact);
3. the embedding is factorised to ``embedding_size`` dims (``factorise.py``), its principal
   directions weighted by how often each piece and position occurs in the shipped WordNet
   sample, the same text on every build;
4. the folder is written, verified and swapped in by ``export.export_model``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AlbertConfig, AlbertModel, AlbertTokenizer

from albatross.training.card import ConvertedBuild
from albatross.training.convert import convert_bert
from albatross.training.factorise import factorise
from albatross.training.vocab import write_tokenizer_config
from albatross.training.wordpiece import PieceVocabulary, piece_vocabulary
from indexer.encoder import record_int8_check
from indexer.samples import SAMPLE_CORPUS

log = logging.getLogger(__name__)

#: Longest text the default model embeds (the teacher's own ``max_seq_length``, and
#: ``export.POOLING``'s ``max_length``).
MAX_LENGTH = 256


def fitting_texts() -> list[str]:
    """The text whose token statistics weight the factorisation: the shipped WordNet glosses."""
    with SAMPLE_CORPUS.open(encoding="utf-8") as stream:
        rows = [json.loads(line) for line in stream if line.strip()]
    return [f"{row['title']}: {row['text']}" for row in rows]


def token_statistics(tokenizer: AlbertTokenizer, texts: list[str], vocab_size: int,
                     positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vocab_size,) and (positions,) float64 occurrence counts of each piece id and each
    position in ``texts``, plus one, so that no piece or position is left out of the fit."""
    pieces = torch.ones(vocab_size, dtype=torch.float64)
    places = torch.ones(positions, dtype=torch.float64)
    for ids in tokenizer(texts, truncation=True, max_length=positions)["input_ids"]:
        pieces += torch.bincount(torch.tensor(ids), minlength=vocab_size)
        places[: len(ids)] += 1
    return pieces, places


def write_tokenizer(vocabulary: PieceVocabulary, folder: Path) -> AlbertTokenizer:
    """Write ``spiece.model`` + ``tokenizer_config.json`` into ``folder`` and load them back."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(vocabulary.serialised())
    write_tokenizer_config(folder)
    return AlbertTokenizer.from_pretrained(folder)


def convert_teacher(teacher_folder: Path, tok_dir: Path,
                    embedding_size: int | None) -> tuple[AlbertModel, PieceVocabulary]:
    """The teacher as an AlbertModel in SentencePiece ids, factorised unless ``embedding_size``
    is None; ``tok_dir`` receives its tokenizer files."""
    from transformers import BertModel

    wordpiece = (teacher_folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocabulary = piece_vocabulary(wordpiece)
    tokenizer = write_tokenizer(vocabulary, tok_dir)
    bert = BertModel.from_pretrained(teacher_folder, add_pooling_layer=False,
                                     local_files_only=True).eval()
    model = convert_bert(bert, torch.tensor(vocabulary.teacher_ids))
    if embedding_size is not None:
        positions = min(MAX_LENGTH, model.config.max_position_embeddings)
        pieces, places = token_statistics(tokenizer, fitting_texts(), len(vocabulary.pieces),
                                          positions)
        model = factorise(model, embedding_size, positions, pieces, places)
    return model, vocabulary


def build(teacher_folder: Path, out: Path, embedding_size: int | None,
          card: Callable[[ConvertedBuild, AlbertConfig], str]) -> ConvertedBuild:
    """Convert the teacher in ``teacher_folder`` into the model folder ``out``.

    ``card`` turns the ConvertedBuild and the model's config into the README.md text.
    """
    from albatross.training.export import export_model

    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        model, vocabulary = convert_teacher(teacher_folder, tok_dir, embedding_size)
        facts = ConvertedBuild(
            teacher=teacher_folder.parent.name, embedding_size=model.config.embedding_size,
            wordpiece_entries=len((teacher_folder / "vocab.txt").read_text().splitlines()),
            pieces=len(vocabulary.pieces), parameters=sum(p.numel() for p in model.parameters()),
            fit_texts=len(fitting_texts()) if embedding_size is not None else 0,
            seconds=time.monotonic() - began)
        export_model(model, tok_dir, out, card(facts, model.config))
    record_int8_check(out)  # loads then skip the int8 probe (see indexer.encoder)
    log.info("converted %s -> %s (E=%d) in %.0f s", teacher_folder, out,
             model.config.embedding_size, facts.seconds)
    return facts
