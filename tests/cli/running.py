"""``albatross`` in its own process, as an operator runs it: the CLI tests' one way to start it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Set in a developer's shell, these would change what the command does or prints.
UNSET = ("ALBATROSS_TOKEN", "ALBATROSS_MODEL", "TRANSFORMERS_VERBOSITY")


def run_albatross(argv: Sequence[str], model: Path | None) -> subprocess.CompletedProcess[str]:
    """``albatross ARGV`` on ``model`` (None: the shipped one), with this interpreter's imports."""
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    if model is not None:
        env["ALBATROSS_MODEL"] = str(model)
    return subprocess.run(
        [sys.executable, "-m", "albatross", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
