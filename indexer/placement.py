"""Where and how the encoder runs: device, activation dtype, int8 Linear layers, CPU threads.

Chosen once per encoder from ``DeviceConfig`` (``auto`` = CUDA when present, in bf16/fp16 there;
fp32 on CPU, with int8 Linear layers where bulk ingestion asks for them and the model keeps its
vectors, see ``Encoder._with_int8``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import torch
from transformers import PreTrainedModel

from indexer.config import DeviceConfig
from indexer.errors import InvalidArgument

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class Placement:
    """Device and activation dtype; ``int8`` True forces int8 Linear layers, None means "if
    the model keeps its vectors under them" (auto on CPU), False means never."""

    device: torch.device
    dtype: torch.dtype
    int8: bool | None = False
    streams: int = 1


def placement_for(device_config: DeviceConfig) -> Placement:
    """Device and dtype from config: ``auto`` = CUDA if present, bf16/fp16 there, fp32 on CPU."""
    if device_config.threads is not None and device_config.threads < 1:
        raise InvalidArgument("threads must be >= 1", field="threads")
    if device_config.cpu_streams < 1:
        raise InvalidArgument("cpu_streams must be >= 1", field="cpu_streams")
    name = device_config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgument(f"unknown device {name!r}", field="device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {name!r} asked for but CUDA is not available", field="device")
    cpu_streams = device_config.cpu_streams if device.type == "cpu" else 1
    streams = share_threads(device_config.threads, cpu_streams)
    return replace(
        precision_for(device_config.dtype, device, int8_on_cpu=device_config.int8_on_cpu), streams=streams
    )


def share_threads(threads: int | None, cpu_streams: int) -> int:
    """Concurrent forward passes: ``cpu_streams``, but never more than the threads they share.

    torch's thread count is process-wide: the encoder sets it only when configured, to
    ``threads`` (or every core, with several streams) divided among the streams.
    """
    if threads is None and cpu_streams == 1:
        return 1
    total = threads if threads is not None else (os.cpu_count() or 1)
    streams = min(cpu_streams, total)
    torch.set_num_threads(total // streams)
    return streams


def precision_for(name: str, device: torch.device, *, int8_on_cpu: bool = False) -> Placement:
    """``auto``: bf16/fp16 on CUDA; fp32 on CPU (on CPUs without native bf16, bf16 measured about
    5x slower: docs/ARCHITECTURE.md, "Known traps"), with int8 Linear layers if ``int8_on_cpu``
    and the model keeps its vectors under them. ``int8``: CPU only, always."""
    if name == "auto":
        if device.type != "cuda":
            return Placement(device, torch.float32, int8=None if int8_on_cpu else False)
        return Placement(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if name == "int8":
        if device.type != "cpu":
            raise InvalidArgument("dtype int8 runs on the CPU only; on a GPU use bf16 or fp16", field="dtype")
        return Placement(device, torch.float32, int8=True)
    if name not in DTYPES:
        raise InvalidArgument(
            f"unknown dtype {name!r}; choose auto, int8 or one of {', '.join(DTYPES)}", field="dtype"
        )
    return Placement(device, DTYPES[name])


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """A copy of ``model`` with every Linear layer dynamically quantised: int8 weights, int8
    activations quantised per batch, fp32 everywhere else (CPU, fp32 models)."""
    with warnings.catch_warnings():
        # torch.ao points users to torchao; the eager API is what runs on this torch.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False
        )
