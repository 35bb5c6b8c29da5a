"""Checkpoints: turn a model reference into a local folder, and fingerprint what is in it.

Albatross never downloads (docs/ARCHITECTURE.md, Invariants 6). A reference is either an existing folder or a
hub id (``albert-base-v2``, ``org/name``) already in the local Hugging Face hub cache, whose
layout is ``<cache>/models--org--name/{refs/main, snapshots/<revision>/...}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from indexer.errors import ModelNotFound
from indexer.spec import MODEL_DEFAULTS_FILE, field_info, spec_fields

# Files whose bytes decide what a model computes; sharded checkpoints hash every shard.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
# Files whose bytes decide how text becomes token ids.
_TOKENIZER_FILES = (
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SHORT_HEX = 16


def resolve_model(model_ref: str, hf_cache_dir: Path | None) -> Path:
    """The local folder holding ``model_ref``; raises ``ModelNotFound`` with a fetch hint.

    model_ref: a folder path, or a hub id looked up in ``hf_cache_dir`` (the hub cache folder,
        ``$HF_HOME/hub``; None means folders only).
    """
    folder = Path(model_ref).expanduser()
    if folder.is_dir():
        return _checked_folder(folder.resolve(), model_ref)
    if _HUB_ID.match(model_ref) and hf_cache_dir is not None:
        snapshot = _cached_snapshot(model_ref, hf_cache_dir)
        if snapshot is not None:
            return _checked_folder(snapshot, model_ref)
    raise ModelNotFound(_not_found_message(model_ref, hf_cache_dir))


def model_defaults(folder: Path) -> dict[str, Any]:
    """The spec defaults the folder's ``MODEL_DEFAULTS_FILE`` gives (pooling, layers, normalize,
    max_length: how the model was built to be used); ``{}`` for a folder without one.

    Keys that are not model-given spec fields are ignored, so the file may say more.
    """
    path = folder / MODEL_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(values, dict):
        raise ModelNotFound(f"{path} must hold a JSON object, got {type(values).__name__}")
    given = {f.name for f in spec_fields() if field_info(f).from_model}
    return {key: value for key, value in values.items() if key in given}


def model_revision(folder: Path) -> str:
    """Short SHA-256 hex of the weight file(s) in ``folder``: same weights, same revision."""
    weights = sorted({p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)})
    if not weights:
        raise ModelNotFound(
            f"{folder} holds no weights (model.safetensors or pytorch_model.bin); "
            "save the model with save_pretrained into this folder"
        )
    return _digest(weights)


def stored_tensor_names(folder: Path) -> frozenset[str] | None:
    """Names of the tensors the folder's safetensors weights hold, read from the file headers
    (no tensor is loaded); None when the weights are pickled (``pytorch_model*.bin``), whose names
    only loading them would tell, or unreadable (loading then says why)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    names: set[str] = set()
    try:
        for path in files:
            with safe_open(path, framework="numpy") as weights:
                names.update(weights.keys())
    except (OSError, SafetensorError):
        return None
    return frozenset(names)


def tokenizer_hash(folder: Path) -> str:
    """Short SHA-256 hex of the tokenizer files in ``folder`` (names and bytes)."""
    files = [folder / name for name in _TOKENIZER_FILES if (folder / name).is_file()]
    if not files:
        raise ModelNotFound(
            f"{folder} holds no tokenizer files (spiece.model, vocab.txt or tokenizer.json)"
        )
    return _digest(files)


def _digest(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:_SHORT_HEX]


def _checked_folder(folder: Path, model_ref: str) -> Path:
    if not (folder / "config.json").is_file():
        raise ModelNotFound(
            f"{model_ref!r} ({folder}) has no config.json, so it is not a saved model folder. "
            + _fetch_hint(model_ref)
        )
    return folder


def _cached_snapshot(repo_id: str, hf_cache_dir: Path) -> Path | None:
    """The snapshot folder of ``repo_id`` in the hub cache: ``refs/main`` if present, else newest."""
    repo_dir = hf_cache_dir / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir() and (hf_cache_dir / "hub").is_dir():
        # Accept $HF_HOME itself as well as $HF_HOME/hub.
        repo_dir = hf_cache_dir / "hub" / repo_dir.name
    main = repo_dir / "refs" / "main"
    if main.is_file():
        snapshot = repo_dir / "snapshots" / main.read_text(encoding="utf-8").strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    snapshots = [s for s in (repo_dir / "snapshots").glob("*") if (s / "config.json").is_file()]
    if not snapshots:
        return None
    return max(snapshots, key=lambda s: s.stat().st_mtime)


def _not_found_message(model_ref: str, hf_cache_dir: Path | None) -> str:
    if not _HUB_ID.match(model_ref):
        return f"model folder {model_ref!r} does not exist. " + _fetch_hint(model_ref)
    where = f"the Hugging Face cache {hf_cache_dir}" if hf_cache_dir else "no Hugging Face cache"
    return (
        f"model {model_ref!r} is not on this machine: it is not a folder and is not in {where}. "
        "Albatross never downloads models. " + _fetch_hint(model_ref)
    )


def _fetch_hint(model_ref: str) -> str:
    hub_id = model_ref if _HUB_ID.match(model_ref) else "MODEL_ID"
    return (
        f"On a machine with network access run `huggingface-cli download {hub_id}` and copy its "
        "Hugging Face cache folder here (set HF_HOME to it), or save a folder with "
        f"`python -c \"from transformers import AutoModel, AutoTokenizer; "
        f"AutoModel.from_pretrained('{hub_id}').save_pretrained('DIR'); "
        f"AutoTokenizer.from_pretrained('{hub_id}').save_pretrained('DIR')\"`, "
        "copy DIR here and pass --model DIR."
    )
