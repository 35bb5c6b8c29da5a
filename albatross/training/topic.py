"""The WordNet topic head: what a noun's gloss is about (animal, food, plant, ...).

Data: the noun glosses of WordNet 3.0 (apt ``wordnet-base``), each labelled by its lexicographer
file, which WordNet's editors chose by hand. Every synset of the shipped demo sample is held out
(the demo is never trained on), and so is a seeded random split of every class, for accuracy.

Method: the default encoder stays frozen. Every gloss is embedded once (no gradients) exactly as
``indexer.classifier`` feeds a ``*ForSequenceClassification`` model: ``[CLS] title\\ntext [SEP]``;
the vector kept is the last hidden state at ``[CLS]``, which is what that model's own pooler
reads. On it a small network of the same shape as ALBERT's top, ``Linear -> tanh -> Linear``, is
trained; its weights become the pooler and the classifier of the assembled model
(``indexer.topic_model``), whose forward pass is then the trained network, operation for operation.
The feature standardisation is folded into the pooler, and the head is stored in float16; the
figures on the card are measured with the stored float16 weights.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from albatross.training.corpus import LICENCES, WORDNET_DIR, Synset, gloss_text, parse_wordnet_line
from indexer.checkpoints import model_revision
from indexer.config import DEFAULT_MODEL_DIR
from indexer.encoder import load_tokenizer, pad_ids
from indexer.samples import SAMPLE_CORPUS
from indexer.topic_model import HEAD_FILE, HEAD_TENSORS

log = logging.getLogger(__name__)

#: Lexicographer file number -> label: the 19 noun files with at least 1,000 synsets (96.7% of
#: WordNet's nouns). Left out: noun.Tops (51 synsets, the unique beginners, not a topic) and the
#: six small files noun.feeling, motive, phenomenon, process, relation, shape (42-770 each),
#: too few glosses to learn or measure a class from.
LEXFILES: dict[int, str] = {
    4: "act",
    5: "animal",
    6: "artifact",
    7: "attribute",
    8: "body",
    9: "cognition",
    10: "communication",
    11: "event",
    13: "food",
    14: "group",
    15: "location",
    17: "object",
    18: "person",
    20: "plant",
    21: "possession",
    23: "quantity",
    26: "state",
    27: "substance",
    28: "time",
}
_BATCH = 64


@dataclass(frozen=True)
class TopicConfig:
    """How the head is trained; every figure on the card follows from these and the data."""

    seed: int = 0
    per_class: int = 800  # glosses drawn per class (all of a smaller class)
    held_out: int = 100  # of those, per class, kept for accuracy
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    threads: int = 2


@dataclass(frozen=True)
class Split:
    """Texts (``title\\ntext``) and label indices of one split."""

    texts: list[str]
    labels: np.ndarray  # int64 (n,)


def document_text(synset: Synset) -> str:
    """What ingest classifies for a sample document: title, newline, text (``embedding_text``)."""
    return f"{synset.lemmas[0]}\n{gloss_text(synset)}"


def read_splits(config: TopicConfig, wordnet_dir: Path = WORDNET_DIR) -> tuple[Split, Split, Split]:
    """(train, held-out, demo sample) from WordNet's nouns; the sample's synsets are in neither
    of the first two."""
    sample = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    sample_offsets = {row["_id"].removeprefix("wn-") for row in sample}
    by_label: dict[int, list[str]] = {index: [] for index in range(len(LEXFILES))}
    index_of = {number: i for i, number in enumerate(LEXFILES)}
    with open(wordnet_dir / "data.noun", encoding="utf-8") as stream:
        for line in stream:
            synset = parse_wordnet_line(line)
            if synset and synset.lexname in index_of and synset.key[1:] not in sample_offsets:
                by_label[index_of[synset.lexname]].append(document_text(synset))
    rng = random.Random(config.seed)
    train, test = Split([], np.empty(0, np.int64)), Split([], np.empty(0, np.int64))
    train_labels, test_labels = [], []
    for label, texts in by_label.items():
        drawn = rng.sample(texts, min(config.per_class, len(texts)))
        test.texts.extend(drawn[: config.held_out])
        test_labels += [label] * len(drawn[: config.held_out])
        train.texts.extend(drawn[config.held_out :])
        train_labels += [label] * len(drawn[config.held_out :])
    label_names = list(LEXFILES.values())
    demo = Split(
        [f"{row['title']}\n{row['text']}" for row in sample],
        np.array([label_names.index(row["metadata"]["category"]) for row in sample], np.int64),
    )
    return (
        Split(train.texts, np.array(train_labels, np.int64)),
        Split(test.texts, np.array(test_labels, np.int64)),
        demo,
    )


def cls_vectors(texts: Sequence[str], encoder_dir: Path = DEFAULT_MODEL_DIR) -> np.ndarray:
    """float32 (n, hidden): the encoder's last hidden state at ``[CLS]`` for each whole text, fed
    as ``indexer.classifier`` feeds it (special tokens added, one window: a gloss is far shorter
    than the 510 tokens of a window)."""
    from transformers import AlbertModel

    tokenizer = load_tokenizer(encoder_dir)
    model = AlbertModel.from_pretrained(
        encoder_dir, local_files_only=True, dtype=torch.float32, add_pooling_layer=False
    ).eval()
    ids = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
    window = int(model.config.max_position_embeddings)
    out = np.empty((len(ids), model.config.hidden_size), np.float32)
    order = np.argsort([len(row) for row in ids], kind="stable")  # similar lengths pad little
    with torch.inference_mode():
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            rows = [ids[i][:window] for i in batch]
            input_ids, mask = pad_ids(rows, tokenizer.pad_token_id, torch.device("cpu"))
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            out[batch] = hidden[:, 0].numpy()
    return out


def train_head(
    features: np.ndarray, labels: np.ndarray, classes: int, config: TopicConfig
) -> dict[str, torch.Tensor]:
    """The head's four tensors (``HEAD_TENSORS``, float16) trained on (n, hidden) features."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(features)
    y = torch.from_numpy(labels)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)  # a few [CLS] dims are constant
    standard = (x - mean) / std
    hidden = x.shape[1]
    pooler, classifier = torch.nn.Linear(hidden, hidden), torch.nn.Linear(hidden, classes)
    net = torch.nn.Sequential(
        torch.nn.Dropout(config.dropout),
        pooler,
        torch.nn.Tanh(),
        torch.nn.Dropout(config.dropout),
        classifier,
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    net.train()
    for epoch in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(y), generator=order).split(_BATCH):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(standard[batch]), y[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        log.info("epoch %d: loss %.4f", epoch + 1, total / len(y))
    with torch.no_grad():
        # pooler((x - mean) / std) == (W / std) x + (b - W (mean / std)): the model sees raw h_cls.
        weight = pooler.weight / std
        bias = pooler.bias - pooler.weight @ (mean / std)
        tensors = (weight, bias, classifier.weight, classifier.bias)
        return {
            name: t.detach().to(torch.float16).contiguous()
            for name, t in zip(HEAD_TENSORS, tensors, strict=True)
        }


def head_logits(head: dict[str, torch.Tensor], features: np.ndarray) -> np.ndarray:
    """float32 (n, classes): what the assembled model's pooler and classifier compute."""
    w_p, b_p, w_c, b_c = (head[name].float() for name in HEAD_TENSORS)
    with torch.no_grad():
        pooled = torch.tanh(torch.from_numpy(features) @ w_p.T + b_p)
        return (pooled @ w_c.T + b_c).numpy()


def per_class(predicted: np.ndarray, truth: np.ndarray, classes: int) -> list[tuple[float, float, float]]:
    """(precision, recall, F1) per class; 0 where undefined."""
    out = []
    for c in range(classes):
        hits = float(np.sum((predicted == c) & (truth == c)))
        precision = hits / max(float(np.sum(predicted == c)), 1.0)
        recall = hits / max(float(np.sum(truth == c)), 1.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append((precision, recall, f1))
    return out


def build(out: Path, config: TopicConfig, command: str) -> dict[str, float]:
    """Train the head and write ``HEAD_FILE`` and the card ``README.md`` into ``out``."""
    torch.set_num_threads(config.threads)
    began = time.monotonic()
    train, test, demo = read_splits(config)
    log.info(
        "glosses: %d train, %d held out, %d demo sample", len(train.texts), len(test.texts), len(demo.texts)
    )
    embed_began = time.monotonic()
    vectors = cls_vectors(train.texts + test.texts + demo.texts)
    embed_seconds = time.monotonic() - embed_began
    log.info("embedded %d glosses in %.0f s", len(vectors), embed_seconds)
    n_train, n_test = len(train.texts), len(test.texts)
    parts = vectors[:n_train], vectors[n_train : n_train + n_test], vectors[n_train + n_test :]
    labels = list(LEXFILES.values())
    head = train_head(parts[0], train.labels, len(labels), config)
    predicted = [head_logits(head, part).argmax(1) for part in parts]
    truths = (train.labels, test.labels, demo.labels)
    accuracy = [float(np.mean(p == t)) for p, t in zip(predicted, truths, strict=True)]
    scores = per_class(predicted[1], test.labels, len(labels))
    figures = {
        "train_accuracy": accuracy[0],
        "held_out_accuracy": accuracy[1],
        "held_out_macro_f1": float(np.mean([f1 for _, _, f1 in scores])),
        "demo_sample_accuracy": accuracy[2],
        "embed_seconds": embed_seconds,
        "build_seconds": time.monotonic() - began,
    }
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"labels": json.dumps(labels), "encoder_revision": model_revision(DEFAULT_MODEL_DIR)}
    save_file(head, str(out / HEAD_FILE), metadata=metadata)
    demo_scores = per_class(predicted[2], demo.labels, len(labels))
    card = topic_card(config, figures, scores, demo_scores, (train.labels, test.labels, demo.labels), command)
    (out / "README.md").write_text(card, encoding="utf-8")
    log.info("figures %s", {k: round(v, 4) for k, v in figures.items()})
    return figures


def ranked(scores: list[tuple[float, float, float]], *, best: bool) -> str:
    """The five labels of highest (or lowest) F1, as ``food 0.820, ...``."""
    order = sorted(range(len(scores)), key=lambda i: scores[i][2], reverse=best)[:5]
    names = list(LEXFILES.values())
    return ", ".join(f"{names[i]} {scores[i][2]:.3f}" for i in order)


def topic_card(
    config: TopicConfig,
    figures: dict[str, float],
    scores: list[tuple[float, float, float]],
    demo_scores: list[tuple[float, float, float]],
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    command: str,
) -> str:
    """The model card: what the head labels, how well, from what, and how to rebuild it."""
    counts = [Counter(split.tolist()) for split in splits]
    rows = []
    for i, (number, label) in enumerate(LEXFILES.items()):
        precision, recall, f1 = scores[i]
        demo = f"{demo_scores[i][1]:.3f} ({counts[2][i]})" if counts[2][i] else ""
        rows.append(
            f"| `{label}` | noun.{label} ({number:02d}) | {counts[0][i]:,} | {counts[1][i]} | "
            f"{precision:.3f} | {recall:.3f} | {f1:.3f} | {demo} |"
        )
    return f"""---
license: apache-2.0
language: en
library_name: transformers
tags: [albert, text-classification, wordnet, albatross]
---

# wordnet-topic

What an English noun's description is about, as one of {len(LEXFILES)} WordNet topics (the
label, below). An `AlbertForSequenceClassification` on Albatross's default encoder
(`albatross-albert-small`, frozen): only the pooler and the classifier (a 384 x 384 layer and a
384 x {len(LEXFILES)} layer, float16, {(384 * 384 + 384 + 384 * len(LEXFILES) + len(LEXFILES)) * 2 / 1024:.0f} KiB) are trained and shipped, as
`head.safetensors`. The full checkpoint is assembled offline: `albatross classifier build-topic --out DIR`,
then `albatross ingest --classifier DIR ...` labels every document.

## Figures

Accuracy over the {len(LEXFILES)} labels, measured with the shipped float16 weights:

| split | documents | accuracy |
| --- | ---: | ---: |
| train | {len(splits[0]):,} | {figures["train_accuracy"]:.3f} |
| **held out** (random, {config.held_out} per label, never trained on) | {len(splits[1]):,} | **{figures["held_out_accuracy"]:.3f}** (macro F1 {figures["held_out_macro_f1"]:.3f}) |
| demo sample (`indexer/samples/wordnet-sample.jsonl`, 7 of the labels, never trained on) | {len(splits[2]):,} | {figures["demo_sample_accuracy"]:.3f} |

Chance is {1 / len(LEXFILES):.3f}. Per label, on the held-out split (precision, recall, F1), and
the recall on the demo sample (its documents per label):

| label | WordNet file | train | held out | precision | recall | F1 | demo recall |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Best held-out F1: {ranked(scores, best=True)}; worst: {ranked(scores, best=False)}. The abstract
files overlap in WordNet itself (an act, an event and a state are often the same gloss's reading).

## Labels

The 19 noun lexicographer files with at least 1,000 synsets (96.7% of WordNet's nouns), named
without the `noun.` prefix so a filter reads `{{"label": "food"}}`. Left out: `noun.Tops` (the 51
unique beginners, not a topic) and `noun.feeling`, `motive`, `phenomenon`, `process`, `relation`,
`shape` (42 to 770 synsets each: too few to learn or measure a class). A text about one of those
still gets the nearest of the 19.

## How it was built

```
{command}
```

1. **Data.** WordNet 3.0's `data.noun` (Debian `wordnet-base`, read at build time only), one
   document per synset as the demo sample writes it: its first lemma, a newline, the gloss as a
   sentence and its examples; label = the synset's lexicographer file, assigned by WordNet's
   editors. Up to {config.per_class} synsets per label drawn with seed {config.seed}; of those,
   {config.held_out} per label held out. Every synset in the demo sample is excluded from both.
2. **Features.** Each document embedded once by the frozen encoder (float32, no gradients), fed
   as `albatross ingest` feeds a classifier (`[CLS] title\\ntext [SEP]`); the vector kept is the last
   hidden state at `[CLS]`, the input of the sequence classifier's own pooler.
3. **Head.** `dropout {config.dropout} -> Linear(384, 384) -> tanh -> dropout -> Linear(384, {len(LEXFILES)})` on
   standardised features, AdamW (lr {config.lr}, weight decay {config.weight_decay}), batch 64,
   {config.epochs} epochs, seeded; the standardisation is folded into the first layer, which
   becomes the model's pooler, the second its classifier.

The embedding took {figures["embed_seconds"]:.0f} s and the whole build {figures["build_seconds"]:.0f} s on a
shared 2-core x86 CPU, no GPU.

## Data and licence

Labels and glosses: WordNet 3.0, {LICENCES["wordnet"]}; the notice is in
`indexer/samples/WORDNET-LICENSE.md`. Encoder: Apache-2.0 (see its card).
"""
