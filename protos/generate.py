"""Regenerate the checked-in Python stubs from the ``.proto`` files: ``python -m protos.generate``.

The stubs are produced by the pinned ``grpcio-tools`` (its bundled ``protoc``), with the repository
root as the include path, so they import as ``protos.albatross.v1.albatross_pb2``. ``--check``
regenerates into a temporary folder and exits non-zero when the checked-in stubs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path

PINNED_GRPCIO_TOOLS = "1.85.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = ("protos/albatross/v1/albatross.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generated_paths(proto: str) -> list[str]:
    """Repository-relative paths of the stubs generated from one ``.proto`` file."""
    stem = proto.removesuffix(".proto")
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def _check_pinned_version() -> None:
    installed = metadata.version("grpcio-tools")
    if installed != PINNED_GRPCIO_TOOLS:
        raise SystemExit(
            f"grpcio-tools {installed} is installed but the stubs are generated with "
            f"{PINNED_GRPCIO_TOOLS}: pip install grpcio-tools=={PINNED_GRPCIO_TOOLS}"
        )


def generate(out_dir: Path) -> None:
    """Write the stubs of every file in ``PROTO_FILES`` under ``out_dir`` (same relative layout)."""
    from grpc_tools import protoc

    _check_pinned_version()
    well_known = resources.files("grpc_tools") / "_proto"
    for proto in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(REPO_ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def stale_stubs(root: Path = REPO_ROOT) -> list[str]:
    """Paths of checked-in stubs under ``root`` that differ from freshly generated ones."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for proto in PROTO_FILES:
            for relative in generated_paths(proto):
                fresh, checked_in = Path(tmp) / relative, root / relative
                if not checked_in.exists() or not filecmp.cmp(fresh, checked_in, shallow=False):
                    stale.append(relative)
        return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protos.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the checked-in stubs are not up to date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_stubs()
        for path in stale:
            print(f"out of date: {path} (run: python -m protos.generate)", file=sys.stderr)
        return 1 if stale else 0
    generate(REPO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
