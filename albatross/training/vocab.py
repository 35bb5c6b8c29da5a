"""SentencePiece unigram vocabulary trained on the distillation corpus.

Laid out like ALBERT's ``spiece.model``: ``<pad>``=0, ``<unk>``=1, ``[CLS]``=2, ``[SEP]``=3,
``[MASK]``=4, then the learned pieces.  Text is lowercased and accent-stripped before training
because the Albert tokenizer does exactly that before it calls SentencePiece
(``do_lower_case=True``, ``keep_accents=False``); training on anything else would leave pieces
that can never match.
"""

from __future__ import annotations

import io
import json
import logging
import string
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

log = logging.getLogger(__name__)

SPECIAL_PIECES = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")

#: What ``AlbertTokenizer.from_pretrained`` needs beside ``spiece.model``.
TOKENIZER_CONFIG = {
    "tokenizer_class": "AlbertTokenizer",
    "do_lower_case": True,
    "remove_space": True,
    "keep_accents": False,
    "bos_token": "[CLS]",
    "eos_token": "[SEP]",
    "unk_token": "<unk>",
    "sep_token": "[SEP]",
    "pad_token": "<pad>",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "model_max_length": 512,
}


def normalise(text: str) -> str:
    """Lowercase and strip accents, as the Albert tokenizer does before SentencePiece."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def unigram_model(sentences: Iterable[str], vocab_size: int, *, character_coverage: float = 1.0,
                  required_chars: str = "", exact_size: bool = True, threads: int = 1) -> bytes:
    """A serialised unigram ``spiece.model`` in ALBERT's layout (specials at ids 0-4).

    The one SentencePiece recipe of the project: the default model's vocabulary, the benchmark's
    stand-in and the tests' tiny tokenizers all come from here.  ``exact_size=False`` lets a tiny
    corpus yield fewer pieces than asked instead of failing.
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        required_chars=required_chars,
        hard_vocab_limit=exact_size,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        pad_piece=SPECIAL_PIECES[0], unk_piece=SPECIAL_PIECES[1],
        control_symbols=list(SPECIAL_PIECES[2:]),
        normalization_rule_name="nmt_nfkc",
        num_threads=threads,
        minloglevel=2,
    )
    return model.getvalue()


def train_vocab(texts: Iterable[str], folder: Path, vocab_size: int = 16_000,
                seed: int = 0) -> Path:
    """Train ``folder/spiece.model`` and write ``tokenizer_config.json`` beside it.

    Returns the folder, loadable with ``AlbertTokenizer.from_pretrained(folder)``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model = unigram_model(
        (normalise(t) for t in texts), vocab_size, character_coverage=0.9995,
        # Rare-but-ordinary ASCII ("!", "~", digits) must never become <unk>.
        required_chars=string.ascii_lowercase + string.digits + string.punctuation, threads=2,
    )
    (folder / "spiece.model").write_bytes(model)
    write_tokenizer_config(folder)
    log.info("trained %d-piece unigram vocabulary in %s", vocab_size, folder)
    return folder


def write_tokenizer_config(folder: Path) -> None:
    """Write the ``tokenizer_config.json`` that makes ``folder`` an Albert tokenizer folder."""
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")


def adopt_vocab(model_folder: Path, folder: Path) -> Path:
    """Make ``folder`` hold ``model_folder``'s vocabulary, so a run continues in its token ids.

    Raises ValueError when ``folder`` already holds a different vocabulary: the cached teacher
    vectors do not depend on it, but checkpoints and the exported model would silently mix two.
    """
    source = (model_folder / "spiece.model").read_bytes()
    target = folder / "spiece.model"
    if target.exists() and target.read_bytes() != source:
        raise ValueError(f"{folder} holds another vocabulary than {model_folder}; "
                         "use a fresh --cache-dir to continue from that model")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source)
    write_tokenizer_config(folder)
    return folder


def piece_strings(folder: Path) -> list[str]:
    """All pieces of ``folder/spiece.model`` in id order (``▁`` marks a word start)."""
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
