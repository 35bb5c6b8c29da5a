"""What every benchmark shares: the machine, the results file, timing and percentiles."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    memory_gib: float
    gpu: str
    vector_isa: str = "unknown"

    def describe(self) -> str:
        return (f"{self.cores} CPU cores ({self.cpu}; {self.vector_isa}), {self.memory_gib:.0f} GiB RAM, "
                f"GPU: {self.gpu}")


# The instruction sets that decide CPU results here: hosts named alike ("AMD EPYC") have
# differed between sessions, and int8 and bf16 speed-ups depend on these flags.
_VECTOR_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx512_bf16": "bf16",
                 "amx_tile": "AMX"}


def machine() -> Machine:
    """Cores, CPU model (from /proc/cpuinfo), memory and GPU of this machine."""
    cpu = platform.processor() or "unknown"
    isa = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
        flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
        isa = ", ".join(name for flag, name in _VECTOR_FLAGS.items() if flag in flags) or "no AVX2"
    memory = 0.0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 2**20
    return Machine(os.cpu_count() or 1, cpu, memory, _gpu(), isa)


def _gpu() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "none"


def command_line() -> str:
    """The command that is running, as one would type it again."""
    module = sys.modules["__main__"].__spec__
    head = f"python -m {module.name}" if module is not None else f"python {sys.argv[0]}"
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])


def append_results(title: str, body: str, *, record: bool = True) -> None:
    """Append one dated section (machine, command, then ``body``) to ``bench/RESULTS.md``;
    with ``record`` False only print it."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## {title} — {now}\n\n"
        f"- machine: {machine().describe()}; load average at the end {os.getloadavg()[0]:.1f} "
        f"(other processes share this CPU)\n"
        f"- command: `{command_line()}`\n\n"
        f"{body.rstrip()}\n"
    )
    print(section)
    if not record:
        return
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the benchmarks; newest last.\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as stream:
        stream.write(section)


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self._started


def require_plotting() -> None:
    """Stop at once, not after minutes of measuring, when matplotlib (the ``bench`` extra) is absent."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("this benchmark draws a plot and needs matplotlib: pip install -e '.[bench]'")


def plot_path(requested: Path | None, committed: Path, *, record: bool) -> Path:
    """Where a benchmark draws its plot: ``--plot`` if given, else the committed picture when the
    run is recorded in RESULTS.md, else a scratch file (a trial run must not replace the picture
    that RESULTS.md describes)."""
    if requested is not None:
        return requested
    if record:
        return committed
    return Path(tempfile.gettempdir()) / committed.name


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Percentiles of ``values`` (0 for an empty list)."""
    if not values:
        return [0.0 for _ in points]
    return [float(p) for p in np.percentile(np.asarray(values, dtype=np.float64), points)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, from /proc (Linux), 0.0 where absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
