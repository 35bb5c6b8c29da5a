"""``albatross --help`` answers at once: building the parser imports no model stack."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from indexer.version import installed_version

HEAVY = ("torch", "transformers", "faiss", "sqlalchemy")


def _run(*code_or_args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, *code_or_args], capture_output=True, text=True, env=env, timeout=120
    )


def test_building_the_parser_and_printing_help_imports_no_model_stack() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from albatross.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['search', '--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["ingest"], ["search"], ["eval"], ["demo"], ["classifier", "build-topic"]]
)
def test_every_help_answers(command: list[str]) -> None:
    result = _run("-m", "albatross", *command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: albatross")


def test_the_version_is_printed() -> None:
    result = _run("-m", "albatross", "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"albatross {installed_version()}"
