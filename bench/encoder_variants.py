"""The default encoder's variants side by side with their teacher:
``python -m bench.encoder_variants --model LABEL=FOLDER ... [--teacher FOLDER]``.

For every folder, through the encoder Albatross serves with (``indexer.encoder.Encoder``, CPU,
fp32, the same batching for all): nDCG@10 and Recall@100 of exact cosine search on MS MARCO 5k
(its BEIR folder), each paired per query with the teacher; the cosine of every
passage vector to the teacher's; CPU passages/s of fp32 (all passages, one pass each, in the
order given, so the teacher's rate is this run's baseline); and int8: the encoder's own probe
verdict and the min cosine of int8 to fp32 over ``--int8-passages`` passages. Needs the
``train`` extra for the default teacher folder. Appends a section to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from albatross.evaluation.metrics import paired_bootstrap
from albatross.training.quick_eval import BeirSet, load_beir, per_query_metrics
from bench import corpus
from bench.common import append_results, log, markdown_table
from indexer.config import DeviceConfig, EncoderConfig
from indexer.encoder import Encoder
from indexer.records import CollectionSpec

DATA = corpus.MSMARCO.parent


def encoder(folder: str, dtype: str, *, int8_on_cpu: bool = False) -> Encoder:
    """``folder``'s encoder on the CPU in ``dtype`` (float32, int8, or auto: int8 where the
    load-time probe allows it, as bulk ingestion asks)."""
    return Encoder.load(folder, CollectionSpec(model=folder),
                        EncoderConfig(device=DeviceConfig("cpu", dtype, int8_on_cpu=int8_on_cpu)))


def measure(folder: str, data: BeirSet, int8_passages: int) -> dict:
    """Vectors, per-query metrics, fp32 passages/s and the int8 figures of one folder."""
    fp32 = encoder(folder, "float32")
    began = time.perf_counter()
    docs = fp32.encode(data.doc_texts)
    rate = len(docs) / (time.perf_counter() - began)
    queries = fp32.encode(data.query_texts)
    int8 = encoder(folder, "int8")
    subset = int8.encode(data.doc_texts[:int8_passages])
    verdict = encoder(folder, "auto", int8_on_cpu=True).precision
    return {"docs": docs, "metrics": per_query_metrics(data, docs, queries), "rate": rate,
            "int8_min": float(np.min(np.sum(subset * docs[:int8_passages], axis=1))),
            "int8_default": verdict, "params": sum(p.numel() for p in fp32._model.parameters())}


def row(label: str, result: dict, teacher: dict) -> list[object]:
    """One table row: quality paired with the teacher, cosine to it, speed ratio, int8."""
    cells: list[object] = [label, f"{result['params'] / 1e6:.1f}M"]
    for k in (0, 1):
        paired = paired_bootstrap(teacher["metrics"][:, k], result["metrics"][:, k])
        cells.append(f"{paired.b:.4f} ({paired.difference:+.4f} [{paired.low:+.4f}, {paired.high:+.4f}])")
    cosine = np.sum(result["docs"] * teacher["docs"], axis=1)
    cells += [f"{cosine.mean():.4f} / {cosine.min():.4f}", f"{result['rate']:.1f}",
              f"{result['rate'] / teacher['rate']:.2f}x", f"{result['int8_min']:.4f}",
              result["int8_default"]]
    return cells


def speed_rows(folders: list[tuple[str, str]], texts: list[str], rounds: int) -> list[list[object]]:
    """fp32 passages/s of each folder on ``texts``, all loaded first and run in turn ``rounds``
    times (so a change in the host's load hits every model alike); median rate, ratio to the
    first folder's."""
    encoders = [(label, encoder(folder, "float32")) for label, folder in folders]
    rates: dict[str, list[float]] = {label: [] for label, _ in encoders}
    for _ in range(rounds):
        for label, model in encoders:
            began = time.perf_counter()
            model.encode(texts)
            rates[label].append(len(texts) / (time.perf_counter() - began))
    baseline = float(np.median(rates[encoders[0][0]]))
    return [[label, f"{np.median(r):.1f}", f"{np.median(r) / baseline:.2f}x",
             " ".join(f"{x:.1f}" for x in r)] for label, r in rates.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.encoder_variants")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=FOLDER")
    parser.add_argument("--teacher", default=None, help="teacher folder (default: the installed one)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--int8-passages", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    parser.add_argument("--speed-only", type=int, default=None, metavar="N",
                        help="only fp32 passages/s on the first N passages, --rounds times each")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.teacher is None:
        from albatross.training.teacher import teacher_dir

        args.teacher = str(teacher_dir())
    torch.set_num_threads(args.threads)
    data = load_beir(args.data)
    if args.speed_only:
        folders = [("teacher all-MiniLM-L6-v2", args.teacher)] + [
            (label, folder) for label, _, folder in (m.rpartition("=") for m in args.model)]
        texts = data.doc_texts[: args.speed_only]
        body = (f"fp32 passages/s on the first {len(texts)} passages of `{args.data.name}`, CPU, "
                f"{args.threads} torch threads, {args.rounds} rounds in turn (median; every round)."
                "\n\n" + markdown_table(["model", "passages/s", "vs teacher", "rounds"],
                                          speed_rows(folders, texts, args.rounds)))
        append_results("Default encoder vs the teacher: CPU speed", body, record=not args.no_record)
        return
    log(f"teacher {args.teacher}")
    teacher = measure(args.teacher, data, args.int8_passages)
    rows = [row("teacher all-MiniLM-L6-v2 (BERT, WordPiece)", teacher, teacher)]
    for spec in args.model:
        label, _, folder = spec.rpartition("=")
        log(f"{label}: {folder}")
        rows.append(row(label, measure(folder, data, args.int8_passages), teacher))
        log(" | ".join(str(cell) for cell in rows[-1]))
    header = ["model", "params", "nDCG@10 (vs teacher, 95% CI)", "Recall@100 (vs teacher, 95% CI)",
              "cosine to teacher mean / min", "fp32 passages/s", "vs teacher",
              f"int8 min cosine to fp32 ({args.int8_passages} passages)", "encoder's int8 verdict (auto)"]
    body = (f"{len(data.query_ids)} judged queries, {len(data.doc_ids)} passages of "
            f"`{args.data.name}`; CPU, {args.threads} torch threads, fp32 unless stated.\n\n"
            + markdown_table(header, rows))
    append_results("Default encoder variants vs the teacher", body, record=not args.no_record)


if __name__ == "__main__":
    main()
