"""A few real distillation steps on the CPU: the loop, its checkpoint and the device choice."""

from pathlib import Path

import numpy as np
import pytest
import torch

from albatross.training.corpus import Text
from albatross.training.distill import DistillConfig, latest_checkpoint, run, training_device
from albatross.training.export import load_student, read_facts
from albatross.training.vocab import train_vocab

SENTENCES = [
    "A harbour is a sheltered place where ships may anchor safely.",
    "Search engines rank passages by the similarity of their vectors to a query.",
    "Dictionaries give definitions, quotations and the history of words.",
    "What is a lighthouse and why was it built on the rocks?",
    "Quiet rivers flow slowly through green valleys towards the sea.",
    "how long does it take to boil an egg",
] * 8


def test_three_steps_on_the_cpu_leave_a_cpu_checkpoint_that_says_where_it_trained(tmp_path: Path) -> None:
    tok_dir = train_vocab(SENTENCES, tmp_path / "tok", vocab_size=120)
    texts = [Text(f"{sentence} ({i})", "wordnet/gloss") for i, sentence in enumerate(SENTENCES)]
    vectors = np.random.default_rng(0).normal(size=(len(texts), 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(tmp_path / "teacher.npy", vectors.astype(np.float16))
    config = DistillConfig(total_steps=3, init="random", heldout=12, eval_every=1000, device="auto",
                           tokens_per_batch=256, max_batch=16, warmup_steps=1)

    checkpoint = run(texts, tmp_path / "teacher.npy", tok_dir, tmp_path / "ckpt", config, tmp_path / "train.log")

    assert checkpoint == latest_checkpoint(tmp_path / "ckpt")
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["step"] == 3
    tensors = [*saved["model"].values(), *(t for s in saved["optimizer"]["state"].values() for t in s.values())]
    assert all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))
    model, meta = load_student(checkpoint)
    expected = "GPU" if torch.cuda.is_available() else "CPU"
    assert expected in meta["trained_on"]
    assert expected in read_facts(meta, texts, None, None).trained_on
    log = (tmp_path / "train.log").read_text()
    assert "step 3 final heldout_cos" in log
    assert model.config.hidden_size == 384


def test_an_unusable_training_device_is_refused_with_its_name() -> None:
    assert training_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="'tpu7'"):
        training_device("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            training_device("cuda")
