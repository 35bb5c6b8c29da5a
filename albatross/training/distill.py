"""Distil the teacher's sentence vectors into the ALBERT student, resumably.

Loss per batch (student vectors ``s``, cached teacher vectors ``t``, both (b, 384) and unit):

- ``1 - cos(s_i, t_i)`` averaged: point-wise agreement;
- ``KL(softmax(t t^T / tau) || softmax(s s^T / tau))`` over each row without its diagonal: the
  in-batch neighbour ranking, which is what retrieval actually consumes.

Batches are length-bucketed under a token budget (padding is wasted CPU), and the training
state (model, optimiser, step, epoch, position in the epoch, elapsed time) is checkpointed every
few minutes with an atomic rename, so a killed run resumes where it stopped.  SIGTERM and
SIGINT make the loop checkpoint and return.

On a GPU (``device`` auto or cuda) the student's forward and backward passes run under bf16
autocast while weights, optimiser state and the loss stay fp32; checkpoints are written from and
read into CPU memory, so a run started on a GPU resumes or exports on a CPU and back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from transformers import AlbertModel, AlbertTokenizer

from albatross.training.corpus import Text
from albatross.training.teacher import mean_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of one distillation run (the defaults built the shipped model)."""

    total_steps: int = 6_000
    seed: int = 0
    max_minutes: float | None = None
    # "static": the student starts as a bag of teacher piece vectors (warmstart.static_start);
    # "warm": embeddings and shared layer from the teacher; "embeddings": embeddings only;
    # "random": nothing from the teacher.
    init: str = "static"
    # An exported model folder to continue from instead (its weights; ``init`` is then unused).
    # A fresh optimiser warms up again, so a later phase can run on new texts or a new schedule.
    init_from: str | None = None
    # Shape of the student: layer groups (1 = every layer shares one) and feed-forward width.
    # A student grown from ``init_from`` starts as an exact copy of it (warmstart.grow_into).
    groups: int = 1
    intermediate_size: int = 1536
    # The factorised word embedding: 256 holds a fitted bag at held-out cosine 0.767, 128 only
    # 0.691 (the rank cut of a 384-d bag; albatross/training/bag.py).
    embedding_size: int = 128
    # Epochs fitting the static start's bag to the teacher vectors (0: isolated-piece vectors).
    # 18 fitted epochs start at held-out cosine 0.767 (256-d), but every learning rate tried
    # (Adam 1e-5..3e-4, SGD, embeddings or biases frozen) lowered it within 90 steps, so the
    # default stays the isolated-piece bag, from which distillation climbs steadily.
    bag_epochs: int = 0
    teacher_layer: int = 0
    lr: float = 3e-4
    # Peak learning rate of the word embeddings and their projection (None: ``lr``).  From the
    # phase-2 model, 90 steps at 1e-3 for them and 3e-5 for the layer raised held-out cosine
    # 0.656 -> 0.708, while one rate for all (1.5e-4) lowered it to 0.60: the embeddings were
    # far from what they can hold, the shared layer close.
    embedding_lr: float | None = None
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    tokens_per_batch: int = 3072
    max_batch: int = 128
    max_length: int = 128
    relational_weight: float = 1.0
    temperature: float = 0.05
    heldout: int = 1000
    eval_every: int = 200
    checkpoint_every_s: float = 300.0
    keep_checkpoints: int = 2
    # "auto": a CUDA GPU when present, else the CPU (where the shipped model was trained).
    device: str = "auto"


def training_device(name: str) -> torch.device:
    """The device ``name`` asks for (``auto``: CUDA when present); an unusable one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown training device {name!r}: use auto, cpu or cuda") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training device {name!r} asked for, but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"training device {name!r} is not supported: use auto, cpu or cuda")
    return device


def describe_device(device: torch.device) -> str:
    """Where a run trained, for the model card."""
    if device.type == "cuda":
        return f"one {torch.cuda.get_device_name(device)} GPU (bf16 autocast)"
    return f"a {os.cpu_count()}-core CPU ({torch.get_num_threads()} torch threads), no GPU"


def _precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a GPU (tensor-core matmuls); plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def length_batches(lengths: np.ndarray, indices: np.ndarray, config: DistillConfig,
                   rng: random.Random) -> list[np.ndarray]:
    """Split ``indices`` into shuffled batches of similar length under the token budget.

    lengths: (n,) token counts of the whole corpus; indices: the rows to batch.  Pools of a few
    thousand random rows are sorted by length and cut so that ``batch * longest <= budget``.
    """
    order = np.array(indices)
    rng.shuffle(order)
    batches: list[np.ndarray] = []
    pool = 50 * config.max_batch
    for p in range(0, len(order), pool):
        chunk = order[p:p + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        start = 0
        while start < len(chunk):
            end = start + 1
            while (end < len(chunk) and end - start < config.max_batch
                   and (end - start + 1) * lengths[chunk[end]] <= config.tokens_per_batch):
                end += 1
            if end - start >= 2:  # a single row has no in-batch neighbours
                batches.append(chunk[start:end])
            start = end
    rng.shuffle(batches)
    return batches


def distill_loss(student: torch.Tensor, teacher: torch.Tensor,
                 config: DistillConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-wise and relational loss.  student, teacher: (b, d) unit vectors.

    Returns (cosine loss, relational KL), both scalars.
    """
    cos_loss = 1.0 - (student * teacher).sum(dim=-1).mean()
    eye = torch.eye(len(student), dtype=torch.bool, device=student.device)
    s_sim = (student @ student.T / config.temperature).masked_fill(eye, -1e4)
    t_sim = (teacher @ teacher.T / config.temperature).masked_fill(eye, -1e4)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s_sim, dim=-1),
                                    torch.log_softmax(t_sim, dim=-1),
                                    log_target=True, reduction="batchmean")
    return cos_loss, kl


def encode_batch(model: AlbertModel, ids: list[list[int]]) -> torch.Tensor:
    """Mean-pooled fp32 unit vectors (b, d), on the model's device, for already tokenised rows
    (padded here with id 0)."""
    longest = max(len(r) for r in ids)
    input_ids = torch.zeros((len(ids), longest), dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    input_ids, mask = input_ids.to(model.device), mask.to(model.device)
    with _precision(model.device):
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return mean_pool(hidden.float(), mask)


def lr_factor(step: int, config: DistillConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps)
                   / max(1, config.total_steps - config.warmup_steps))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def latest_checkpoint(folder: Path) -> Path | None:
    """Newest ``step-*.pt`` in ``folder``, or None."""
    found = sorted(folder.glob("step-*.pt")) if folder.exists() else []
    return found[-1] if found else None


def save_checkpoint(folder: Path, state: dict, keep: int) -> Path:
    """Write ``state`` to ``folder/step-NNNNNNN.pt`` atomically and prune older ones."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


@torch.no_grad()
def embed_heldout(model: AlbertModel, ids: list[list[int]], dimension: int) -> np.ndarray:
    """The student's unit vectors of the held-out rows, (n, dimension), in ``ids`` order."""
    model.eval()
    order = np.argsort([len(r) for r in ids])
    student = np.zeros((len(ids), dimension), dtype=np.float32)
    for b in range(0, len(order), 64):
        idx = order[b:b + 64]
        student[idx] = encode_batch(model, [ids[i] for i in idx]).cpu().numpy()
    model.train()
    return student


def heldout_cosine(student: np.ndarray, vectors: np.ndarray) -> float:
    """Mean cosine between student and teacher vectors of the same held-out rows."""
    return float(np.mean(np.sum(student * vectors, axis=1)))


def neighbour_agreement(student: np.ndarray, teacher: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest other rows under ``teacher`` that are also among its k
    nearest under ``student``.  student, teacher: (n, d) unit vectors of the same n texts."""
    overlap = 0
    for row, (sims_s, sims_t) in enumerate(zip(student @ student.T, teacher @ teacher.T, strict=True)):
        sims_s[row] = sims_t[row] = -np.inf
        overlap += len(set(np.argpartition(-sims_s, k)[:k]) & set(np.argpartition(-sims_t, k)[:k]))
    return overlap / (k * len(student))


def build_student(tok_dir: Path, config: DistillConfig,
                  fit_on: tuple[list[list[int]], torch.Tensor] | None = None) -> AlbertModel:
    """The student at step 0: warm-started from the teacher or random (seeded).

    ``fit_on`` (training token ids, (n, d) teacher vectors) is what the static start's bag is
    fitted to when ``config.bag_epochs`` > 0.
    """
    from albatross.training import vocab, warmstart

    torch.manual_seed(config.seed)
    pieces = vocab.piece_strings(tok_dir)
    student = warmstart.new_student(warmstart.student_config(
        len(pieces), groups=config.groups, intermediate_size=config.intermediate_size,
        embedding_size=config.embedding_size))
    if config.init_from is not None:
        warmstart.load_exported(student, Path(config.init_from))
        return student
    if config.init in ("static", "warm", "embeddings"):
        from albatross.training.teacher import load_teacher

        t_tok, teacher = load_teacher()
        if config.init == "static":
            fit = fit_on if config.bag_epochs > 0 else None
            warmstart.static_start(student, pieces, t_tok, teacher, config.teacher_layer,
                                   fit_on=fit, fit_epochs=config.bag_epochs)
            return student
        layer = config.teacher_layer if config.init == "warm" else None
        warmstart.warm_start(student, pieces, t_tok, teacher, layer)
    return student


def tokenize(tok_dir: Path, texts: list[Text], max_length: int) -> list[list[int]]:
    """Student token ids (with [CLS]/[SEP]) of every text, truncated to ``max_length``."""
    tokenizer = AlbertTokenizer.from_pretrained(tok_dir)
    return tokenizer([t.text for t in texts], truncation=True,
                     max_length=max_length)["input_ids"]


class _StopFlag:
    """Set by SIGTERM/SIGINT so the loop can checkpoint before exiting."""

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: object) -> None:
        self.raised = True


def epoch_batches(lengths: np.ndarray, train_rows: np.ndarray, config: DistillConfig,
                  epoch: int, position: int) -> Iterator[tuple[int, np.ndarray]]:
    """(position, batch) pairs of ``epoch`` from ``position`` on; same seed -> same batches."""
    batches = length_batches(lengths, train_rows, config,
                             random.Random(config.seed * 1000 + epoch))
    for i in range(position, len(batches)):
        yield i, batches[i]


def corpus_fingerprint(texts: list[Text]) -> str:
    """Short digest of the training texts, so a resumed run knows whether its data changed."""
    digest = hashlib.sha1()
    for t in texts:
        digest.update(t.text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def restore(model: AlbertModel, optimizer: torch.optim.Optimizer, ckpt_dir: Path,
            corpus: str) -> dict:
    """Load the newest checkpoint into model/optimizer; return its progress counters.

    When the checkpoint was trained on other texts (``corpus`` differs), its place in the epoch
    means nothing for the new data: the step count (and so the schedule) carries on, the epoch
    starts over.
    """
    state = {"step": 0, "epoch": 0, "position": 0, "elapsed_s": 0.0, "corpus": corpus}
    path = latest_checkpoint(ckpt_dir)
    if path is not None:
        saved = torch.load(path, weights_only=False, map_location="cpu")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.update({k: saved[k] for k in ("step", "epoch", "position", "elapsed_s")})
        if saved.get("corpus") != corpus:
            log.info("training texts changed since %s: starting a new epoch", path.name)
            state.update(epoch=0, position=0)
        log.info("resumed from %s at step %d", path.name, state["step"])
    return state


_EMBEDDING_PARAMETERS = ("embeddings.word_embeddings.", "encoder.embedding_hidden_mapping_in.")


def parameter_groups(model: AlbertModel, config: DistillConfig) -> list[dict]:
    """AdamW groups: the word embeddings and their projection at ``embedding_lr``, the rest at
    ``lr`` (each group's ``peak_lr``; the schedule scales it)."""
    embedding_lr = config.lr if config.embedding_lr is None else config.embedding_lr
    named = list(model.named_parameters())
    embedding = [p for n, p in named if n.startswith(_EMBEDDING_PARAMETERS)]
    rest = [p for n, p in named if not n.startswith(_EMBEDDING_PARAMETERS)]
    return [{"params": embedding, "peak_lr": embedding_lr}, {"params": rest, "peak_lr": config.lr}]


def train_step(model: AlbertModel, optimizer: torch.optim.Optimizer, ids: list[list[int]],
               teacher: torch.Tensor, step: int, config: DistillConfig) -> tuple[float, float]:
    """One AdamW step on one batch; teacher: (b, d) targets.  Returns (cos loss, KL)."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * lr_factor(step, config)
    cos_loss, kl = distill_loss(encode_batch(model, ids), teacher.to(model.device), config)
    optimizer.zero_grad(set_to_none=True)
    (cos_loss + config.relational_weight * kl).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(cos_loss.detach()), float(kl.detach())


def _on_cpu(state: object) -> object:
    """``state`` (nested dicts, lists and tensors) with every tensor copied to CPU memory."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_on_cpu(value) for value in state)
    return state


def teacher_rows(vectors: np.ndarray, n_texts: int, source: Path) -> np.ndarray:
    """The teacher vectors of the first ``n_texts`` texts.

    ``--texts N`` trains on a prefix of the selection whose labels may already be cached in full:
    the held-out rows must then be the prefix's last ones, not the file's.
    """
    if len(vectors) < n_texts:
        raise ValueError(f"{source} holds {len(vectors)} teacher vectors for {n_texts} texts: "
                         "delete it to label the texts again")
    return vectors[:n_texts]


def run(texts: list[Text], vectors_path: Path, tok_dir: Path, ckpt_dir: Path,
        config: DistillConfig, log_path: Path) -> Path:
    """Distil until ``total_steps`` or ``max_minutes``; resume from the newest checkpoint.

    The last ``heldout`` texts of the (already shuffled) corpus are never trained on; their mean
    cosine to the teacher is logged every ``eval_every`` steps.  Returns the last checkpoint.
    """
    vectors = teacher_rows(np.load(vectors_path), len(texts), vectors_path)
    ids = tokenize(tok_dir, texts, config.max_length)
    lengths = np.array([len(r) for r in ids])
    train_rows = np.arange(len(texts) - config.heldout)
    held_ids, held_vectors = ids[-config.heldout:], vectors[-config.heldout:].astype(np.float32)

    # A resumed run's weights come from its checkpoint: no need to fit a start first.
    fit_on = None if latest_checkpoint(ckpt_dir) is not None else (
        [ids[i] for i in train_rows], torch.from_numpy(vectors[train_rows]).float())
    device = training_device(config.device)
    model = build_student(tok_dir, config, fit_on=fit_on).to(device)
    log.info("distilling on %s", device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.lr,
                                  weight_decay=config.weight_decay)
    state = restore(model, optimizer, ckpt_dir, corpus_fingerprint(texts))
    state["trained_on"] = describe_device(device)
    model.train()
    stop = _StopFlag()
    began, last_ckpt = time.monotonic(), time.monotonic()
    elapsed0 = state["elapsed_s"]

    def snapshot() -> Path:
        state["elapsed_s"] = elapsed0 + time.monotonic() - began
        return save_checkpoint(ckpt_dir, {**state, "model": _on_cpu(model.state_dict()),
                                          "optimizer": _on_cpu(optimizer.state_dict()),
                                          "config": asdict(config),
                                          "student_config": model.config.to_dict()},
                               config.keep_checkpoints)

    with open(log_path, "a", encoding="utf-8") as logf:
        record = _Recorder(logf)
        record.text(f"# run start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                    f"config={asdict(config)}")
        def evaluate(step: int, prefix: str = "") -> float:
            # One pass over the held-out texts serves both measures.
            student = embed_heldout(model, held_ids, held_vectors.shape[1])
            cos = heldout_cosine(student, held_vectors)
            hits = neighbour_agreement(student, held_vectors)
            record.text(f"step {step} {prefix}heldout_cos {cos:.4f} neighbours@10 {hits:.4f}")
            return cos

        if state["step"] == 0:
            evaluate(0)
        while not stop.raised:
            for position, batch in epoch_batches(lengths, train_rows, config, state["epoch"],
                                                 state["position"]):
                losses = train_step(model, optimizer, [ids[i] for i in batch],
                                    torch.from_numpy(vectors[batch]).float(), state["step"],
                                    config)
                state["step"] += 1
                state["position"] = position + 1
                record.step(state["step"], losses, len(batch), optimizer.param_groups[-1]["lr"])
                if state["step"] % config.eval_every == 0:
                    evaluate(state["step"])
                if time.monotonic() - last_ckpt > config.checkpoint_every_s:
                    snapshot()
                    last_ckpt = time.monotonic()
                out_of_time = (config.max_minutes is not None
                               and time.monotonic() - began > 60 * config.max_minutes)
                if stop.raised or out_of_time or state["step"] >= config.total_steps:
                    stop.raised = True
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
        path = snapshot()
        evaluate(state["step"], prefix="final ")
        record.text(f"checkpoint {path.name}")
    return path


class _Recorder:
    """Writes averaged losses and steps/s every ``every`` steps to the log file and logger."""

    def __init__(self, file: TextIO, every: int = 50) -> None:
        self.file, self.every = file, every
        self.window: list[tuple[float, float, int]] = []
        self.since = time.monotonic()

    def text(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        log.info(line)

    def step(self, step: int, losses: tuple[float, float], batch: int, lr: float) -> None:
        self.window.append((*losses, batch))
        if step % self.every:
            return
        cos, kl, size = (float(np.mean(x)) for x in zip(*self.window, strict=True))
        rate = len(self.window) / (time.monotonic() - self.since)
        self.text(f"step {step} cos_loss {cos:.4f} kl {kl:.4f} batch {size:.0f} "
                  f"lr {lr:.2e} steps/s {rate:.3f}")
        self.window, self.since = [], time.monotonic()
