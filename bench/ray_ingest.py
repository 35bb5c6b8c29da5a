"""Ray ingestion throughput with 1, 2, ... local CPU workers, beside the single-process path.

Every run writes the same generated passages (``bench.corpus.generated``) into a fresh collection
of one real PostgreSQL server (started here, as the tests start theirs) with the default model's
shape (``bench.models.default_model``). Two rates per run: the job's (actor start-up and model
loading included; Ray's own start is not) and the steady one (documents after the first part
committed, over the time since then), which is what a long job sees.

    python -m bench.ray_ingest --docs 600 --workers 1,2 [--tiny] [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import append_results, log, machine, markdown_table
from bench.corpus import generated, write_jsonl
from bench.models import default_model
from indexer.config import AppConfig, DeviceConfig, EncoderConfig, IngestConfig, StoreConfig
from indexer.distributed import RayIngestOptions, ingest_with_ray
from indexer.readers import read_path
from indexer.records import CollectionSpec
from indexer.workspace import Workspace
from tests.fixtures.tiny_models import build_tiny_albert
from tests.postgres import start_postgres


class Progress:
    """Times the first committed part, to tell start-up from steady throughput."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.first_docs = 0
        self.docs = 0

    def __call__(self, count: int) -> None:
        self.docs += count
        if self.first_at is None:
            self.first_at, self.first_docs = time.perf_counter(), count

    def steady(self, ended: float) -> float:
        if self.first_at is None or ended <= self.first_at:
            return 0.0
        return (self.docs - self.first_docs) / (ended - self.first_at)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--docs-per-transaction", type=int, default=64)
    parser.add_argument(
        "--tiny", action="store_true", help="the tests' tiny ALBERT instead of the default shape"
    )
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args(argv)
    import ray

    workers = [int(w) for w in args.workers.split(",")]
    # Ray first: on a loaded machine its start-up timed out when it came after torch and PostgreSQL.
    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory(prefix="albatross-ray-bench-") as scratch:
        work = Path(scratch)
        model = build_tiny_albert(work / "tiny") if args.tiny else default_model(work).folder
        label = "tiny test ALBERT" if args.tiny else default_model(work).label
        corpus = write_jsonl(generated(args.docs), work / "corpus.jsonl")
        postgres = start_postgres(work)
        rows = []
        try:
            config = AppConfig(
                store=StoreConfig(data_dir=work / "data", db_url=postgres.new_database()),
                encoder=EncoderConfig(device=DeviceConfig(device="cpu", threads=1)),
                ingest=IngestConfig(docs_per_transaction=args.docs_per_transaction, progress=False),
                default_model=model,
            )
            workspace = Workspace.open(config)
            workspace.catalog.create("single", CollectionSpec(model=""))
            log("single process, 1 thread")
            summary = workspace.ingestor.ingest("single", read_path(str(corpus)))
            rows.append(
                ["single process (1 thread)", f"{summary.docs_per_second:.1f}", "-", f"{summary.seconds:.1f}"]
            )
            for count in workers:
                name = f"ray-{count}"
                workspace.catalog.create(name, CollectionSpec(model=""))
                log(f"ray, {count} worker(s)")
                progress = Progress()
                summary = ingest_with_ray(
                    config, name, [str(corpus)], RayIngestOptions(workers=count), on_progress=progress
                )
                steady = progress.steady(time.perf_counter())
                rows.append(
                    [
                        f"ray, {count} CPU worker(s)",
                        f"{summary.docs_per_second:.1f}",
                        f"{steady:.1f}",
                        f"{summary.seconds:.1f}",
                    ]
                )
            workspace.close()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            postgres.stop()
    body = (
        f"{args.docs} generated passages (~60 words), model: {label}, PostgreSQL store, "
        f"{args.docs_per_transaction} documents per transaction, 1 torch thread per worker; "
        f"machine: {machine().describe()}.\n\n"
        + markdown_table(["engine", "job docs/s", "steady docs/s", "seconds"], rows)
    )
    append_results("Ray ingestion", body, record=args.record)


if __name__ == "__main__":
    main()
