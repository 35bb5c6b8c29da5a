"""Index specs: a FAISS factory string and the search settings it is always searched with.

Pure functions of the spec string (no faiss import), in the manner of FAISS contrib's
``factory_tools``: parsing, where an index of the spec runs, and how much training it needs.
``indexer.index`` builds the index itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from indexer.errors import InvalidCollectionSpec

#: Separates the factory string from the search settings in an index spec.
SEARCH_SEPARATOR = ";"


@dataclass(frozen=True)
class IndexSpec:
    """A parsed index spec: FAISS factory string and search settings (name -> value, in order)."""

    factory: str
    search: tuple[tuple[str, float], ...] = ()

    @property
    def search_string(self) -> str:
        """The settings as FAISS ``ParameterSpace`` reads them ("nprobe=64,k_factor_rf=32")."""
        return ",".join(f"{name}={value:g}" for name, value in self.search)


def parse_index_spec(spec: str) -> IndexSpec:
    """Split ``"factory[;name=value,...]"``; ``InvalidCollectionSpec`` names what is malformed.

    Only the syntax is checked here; whether FAISS knows a setting for this index type is checked
    when the index is created (``VectorIndex.create``).
    """
    factory, _, search = spec.partition(SEARCH_SEPARATOR)
    factory = factory.strip()
    if not factory:
        raise InvalidCollectionSpec(f"index spec {spec!r} has no FAISS factory string", field="index_spec")
    settings: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in search.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise InvalidCollectionSpec(
                f"index spec {spec!r}: search setting {item!r} is not name=value", field="index_spec"
            )
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not np.isfinite(number) or number < 0:
            raise InvalidCollectionSpec(
                f"index spec {spec!r}: search setting {name.strip()!r} needs a non-negative number, "
                f"got {value.strip()!r}",
                field="index_spec",
            )
        settings.append((name.strip(), number))
    return IndexSpec(factory, tuple(settings))


def gpu_placement(index_spec: str, gpu_support: bool, gpus: int) -> bool:
    """Whether an index of ``index_spec`` goes to the GPU: only Flat/IVF families have FAISS GPU
    implementations we rely on, and only when faiss-gpu is installed and a GPU is visible.

    Pure so that the decision is tested without a GPU or faiss-gpu.
    """
    if not gpu_support or gpus <= 0:
        return False
    kinds = [part.strip() for part in index_spec.partition(SEARCH_SEPARATOR)[0].split(",")]
    graph = any(part.upper().startswith(("HNSW", "NSG")) for part in kinds)
    return not graph and any(part.startswith(("Flat", "IVF")) for part in kinds)


def min_training_vectors(spec: str) -> int:
    """Fewest training vectors ``spec`` accepts: k-means needs at least one point per centroid
    (IVF lists; 2**nbits codewords per PQ sub-quantizer). 0 for specs without training."""
    needed = 0
    spec = spec.partition(SEARCH_SEPARATOR)[0]
    for match in re.finditer(r"IVF(\d+)", spec):
        needed = max(needed, int(match.group(1)))
    for match in re.finditer(r"PQ\d+(?:x(\d+))?", spec):
        needed = max(needed, 2 ** int(match.group(1) or 8))
    return needed


#: FAISS warns below 39 training points per centroid: k-means on fewer places centroids that split
#: the data badly, and an IVF index keeps those lists for good (it is never retrained in place).
TRAINING_POINTS_PER_CENTROID = 39


def vectors_to_train_well(spec: str) -> int:
    """How many vectors a collection should hold before ``spec`` is trained: 39 per centroid of
    its largest k-means (IVF lists, PQ codewords); 0 for specs without training."""
    return TRAINING_POINTS_PER_CENTROID * min_training_vectors(spec)
