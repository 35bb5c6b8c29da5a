"""SIGKILL at random, seeded instants: the ingestion worker while it upserts and deletes, the
snapshot loop while it writes snapshots, the searcher while it catches up and snapshots after
every change, and ``albatross ingest`` itself. After every kill, with nothing running:

* SQL holds exactly the acknowledged documents, or those plus the whole operation in flight
  (the worker journals each operation before it starts and acknowledges it, fsynced, only after
  the call returned: after the commit);
* every document is whole (its chunks cover its text, each with a vector), no chunk lacks its
  document, the change log is gap-free and replays to exactly the chunk table;
* no snapshot is torn, and the newest valid one is what a restarted searcher opens;
* snapshot + replay holds exactly SQL's chunks, each found by its own vector;
* the lexical index the killed searcher was committing, reopened and replayed, holds exactly
  SQL's chunks too (ids and count).

Everything restarts with no manual step, and at the end a restarted searcher finds every
acknowledged document by the text of its first chunk.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from indexer import snapshots
from indexer.config import StoreConfig
from indexer.index import VectorIndex
from indexer.records import CollectionInfo, CollectionSpec
from searcher.client import AlbatrossClient
from tests.reliability import harness
from tests.reliability.harness import Child, StoreFacts
from tests.reliability.worker import COLLECTION, document_text

# Seconds after a worker is ready within which it is killed: a few operations, snapshots or
# catch-ups of work at the nominal pace (``operation_pace`` scales them to the pace of the run).
KILL_WINDOW_S = {"ingest": 2.5, "snapshot": 1.0, "serve": 2.0}
# One upsert or delete of the ingest worker on an idle machine; kill windows grow with it.
NOMINAL_OPERATION_S = 0.3
# What runs (concurrently) in one round, each process killed at its own instant.
SCENARIOS = (
    "ingest",
    "ingest+serve",
    "ingest+snapshot",
    "ingest+serve+snapshot",
    "serve+snapshot",
    "cli",
)


@dataclass
class Campaign:
    """One data store, killed ``rounds`` times over with a seeded choice of scenario."""

    folder: Path
    model: Path
    db_url: str | None
    seed: int
    index_spec: str = "Flat"
    kills: int = 0
    # How the operation in flight at a kill turned out (committed or not): both must occur.
    in_flight: Counter[str] = field(default_factory=Counter)
    leftover_temporaries: int = 0
    documents_checked: int = 0
    snapshots_checked: int = 0
    life: int = 0
    collection_exists: bool = False

    @property
    def store(self) -> StoreConfig:
        return StoreConfig(data_dir=self.folder / "data", db_url=self.db_url, busy_timeout_s=30.0)

    @property
    def journal(self) -> Path:
        return self.folder / "journal.jsonl"

    def worker_argv(self, mode: str) -> list[str]:
        argv = [mode, "--data-dir", str(self.store.data_dir), "--model", str(self.model)]
        if self.db_url:
            argv += ["--db", self.db_url]
        return argv

    def start(self, children: list[Child], mode: str) -> Child:
        self.life += 1
        argv = self.worker_argv(mode)
        if mode == "ingest":
            argv += ["--journal", str(self.journal), "--seed", str(self.seed), "--life", str(self.life)]
            argv += ["--index-spec", self.index_spec]
        child = harness.start(f"{mode}-{self.life}", argv, self.folder)
        children.append(child)
        return child

    def kill_all_at_random(self, rng: random.Random, started: list[Child]) -> None:
        """Each child at its own random instant of its work, timed from when all are ready; in
        some rounds the first one dies while the others are still starting up."""
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 0.3))
            self.kill(started[0])
            started = started[1:]
        for child in started:
            child.wait_ready()
        ready = time.monotonic()
        pace = self.operation_pace(started)
        delays = [(rng.uniform(0.1, KILL_WINDOW_S[c.name.split("-")[0]] * pace), c) for c in started]
        for delay, child in sorted(delays, key=lambda pair: pair[0]):
            time.sleep(max(0.0, ready + delay - time.monotonic()))
            self.kill(child)

    def operation_pace(self, started: list[Child]) -> float:
        """How much slower than the nominal pace the workers run now: waits for the ingest
        worker's first acknowledged operation (there is one in every round that has a worker, so
        every such round has committed work to lose) and scales the kill windows by its time."""
        worker = next((c for c in started if c.name.startswith("ingest")), None)
        if worker is None:
            return 1.0
        began = time.monotonic()
        life = f'"life": {self.life_of(worker)},'
        while not any(life in line and '"ack"' in line for line in self.journal.read_text().splitlines()):
            if not worker.process.is_alive() or time.monotonic() - began > harness.READY_TIMEOUT_S:
                raise AssertionError(f"{worker.name} acknowledged nothing:\n{worker.log_tail()}")
            time.sleep(0.02)
        return max(1.0, (time.monotonic() - began) / NOMINAL_OPERATION_S)

    @staticmethod
    def life_of(child: Child) -> int:
        return int(child.name.split("-")[1])

    def kill(self, child: Child) -> None:
        if child.kill():
            self.kills += 1

    def start_cli_ingest(self, children: list[Child], rng: random.Random) -> Child:
        """``albatross ingest`` of a small JSONL file: all of it is one transaction, journaled as
        one operation, acknowledged by exit status 0."""
        self.life += 1
        docs = {f"cli{self.life}-d{i}": document_text(rng, f"cli{self.life}-d{i}", i) for i in range(20)}
        path = self.folder / f"cli-{self.life}.jsonl"
        path.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()))
        harness.append_entry(self.journal, {"entry": "intent", "op": "upsert", "docs": docs})
        argv = ["cli", "ingest", str(path), "--collection", COLLECTION, "--no-progress"]
        argv += ["--data-dir", str(self.store.data_dir)] + (["--db", self.db_url] if self.db_url else [])
        child = harness.start(f"cli-{self.life}", argv, self.folder, {"ALBATROSS_MODEL": str(self.model)})
        children.append(child)
        return child

    def round(self, number: int) -> None:
        rng = random.Random(f"{self.seed}/round/{number}")
        scenario = rng.choice(SCENARIOS) if self.collection_exists else "ingest"
        with harness.children() as children:
            if scenario == "cli":
                child = self.start_cli_ingest(children, rng)
                time.sleep(rng.uniform(0.5, 5.0))
                if child.kill():
                    self.kills += 1
                elif child.process.exitcode == 0:
                    harness.append_entry(self.journal, {"entry": "ack", "sequence": None})
            else:
                started = [self.start(children, mode) for mode in scenario.split("+")]
                rng.shuffle(started)
                self.kill_all_at_random(rng, started)
        self.check()

    def facts_or_none(self) -> StoreFacts | None:
        return harness.check_store(self.store, COLLECTION)

    def check(self) -> None:
        facts = self.facts_or_none()
        model = harness.resolve(self.journal, facts.documents if facts else {})
        if model.settled:
            self.in_flight[model.settled] += 1
        if facts is None:
            return
        self.collection_exists = True
        assert all(s <= facts.last_sequence for s in model.sequences)
        assert model.sequences == sorted(model.sequences), "acknowledged sequences went backwards"
        snapshots = harness.check_snapshots(self.store.snapshot_dir, facts.info)
        harness.check_index(self.store, facts)
        self.documents_checked += len(facts.documents)
        self.snapshots_checked += snapshots.manifests
        self.leftover_temporaries = snapshots.leftover_temporaries

    def search_everything(self) -> int:
        """Restart the searcher once more; it must find every acknowledged document."""
        facts = self.facts_or_none()
        assert facts is not None
        with harness.children() as children:
            server = self.start(children, "serve")
            server.wait_ready()
            target = f"127.0.0.1:{int(server.ready.read_text())}"
            with AlbatrossClient(target, timeout=120) as client:
                stats = client.get_collection(COLLECTION).stats
                assert (stats.documents, stats.index_sequence) == (len(facts.documents), facts.last_sequence)
                assert stats.index_vectors == len(facts.chunk_ids)
                assert (stats.lexical_sequence, stats.lexical_chunks) == (
                    facts.last_sequence,
                    len(facts.chunk_ids),
                )
                return harness.assert_found_by_own_vector(client, COLLECTION, facts)

    def run(self, rounds: int) -> None:
        for number in range(rounds):
            self.round(number)


def run_campaign(campaign: Campaign, rounds: int, figures: Counter[str], label: str) -> None:
    started = time.monotonic()
    campaign.run(rounds)
    searched = campaign.search_everything()
    figures["kills survived"] += campaign.kills
    figures["documents checked after kills"] += campaign.documents_checked
    figures["documents found by search after restart"] += searched
    figures["snapshots verified"] += campaign.snapshots_checked
    for outcome, count in campaign.in_flight.items():
        figures[f"kills with a write in flight, {outcome}"] += count
    print(
        f"\n[crash {label}] {campaign.kills} kills in {rounds} rounds, in flight {dict(campaign.in_flight)}, "
        f"{campaign.documents_checked} document checks, {searched} searched, "
        f"{campaign.snapshots_checked} snapshot checks, {campaign.leftover_temporaries} snapshot "
        f"temporaries left, {time.monotonic() - started:.0f}s"
    )


def test_sqlite_survives_sigkill_of_worker_snapshotter_searcher_and_cli(
    tmp_path: Path, tiny_albert_dir: Path, figures: Counter[str]
) -> None:
    campaign = Campaign(tmp_path, tiny_albert_dir, None, seed=20261125)

    run_campaign(campaign, rounds=12, figures=figures, label="sqlite")

    assert campaign.kills >= 12


@pytest.mark.postgres
def test_postgresql_survives_sigkill_of_worker_and_searcher(
    tmp_path: Path, tiny_albert_dir: Path, postgres_url: str, figures: Counter[str]
) -> None:
    campaign = Campaign(tmp_path, tiny_albert_dir, postgres_url, seed=7, index_spec="HNSW16")

    run_campaign(campaign, rounds=6, figures=figures, label="postgresql")

    assert campaign.kills >= 6


def test_the_temporary_of_a_snapshot_write_killed_midway_is_removed_once_stale(tmp_path: Path) -> None:
    # The campaigns above leave such temporaries (".<name>.<random>.tmp", index-sized) whenever a
    # kill lands inside atomic_write; each later snapshot clears the ones that are stale.
    info = CollectionInfo(1, "c", CollectionSpec(model="m"), 4, "rev", "tok")
    folder = tmp_path / "c"
    folder.mkdir()
    stale, fresh = (
        folder / ".00000000000000000007.faiss.abc.tmp",
        folder / ".00000000000000000009.faiss.def.tmp",
    )
    for temporary in (stale, fresh):
        temporary.write_bytes(b"half a snapshot")
    an_hour_ago = time.time() - snapshots.STALE_TEMPORARY_S - 60
    os.utime(stale, (an_hour_ago, an_hour_ago))

    snapshots.write_snapshot(tmp_path, info, 12, VectorIndex.create("Flat", 4).to_bytes())

    assert (stale.exists(), fresh.exists()) == (False, True)
    loaded = snapshots.latest(tmp_path, info)
    assert loaded is not None and loaded.sequence == 12
