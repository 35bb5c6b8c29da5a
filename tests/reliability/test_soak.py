"""Concurrency soak, bounded and seeded: a real server, writer threads upserting (new documents,
changed and unchanged versions, documents every writer fights over) and deleting, while searcher
threads query. Then two ``albatross ingest`` processes on one SQLite collection at once.

What "search results reference only committed documents" means here: every hit names a document
whose upsert had been *sent* before the search returned, with a chunk of a version that was sent;
and by the end every sent upsert was acknowledged (no call failed). A hit cannot be required to be
acknowledged *before* the search returned: the commit, the index catching up and a search can all
happen while the acknowledgement is still on its way back to the writer.

The final state must be exactly the model: for each document, the acknowledged change with the
highest sequence number wins (writes to one collection commit one at a time, in sequence order).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest

from albatross import cli, options
from indexer.config import AppConfig, ServerConfig, StoreConfig
from indexer.records import Condition, Document, MetadataFilter
from searcher.client import AlbatrossClient
from searcher.server import RunningServer, create_server
from tests.reliability import harness
from tests.reliability.worker import WORDS
from tests.searcher.test_grpc_end_to_end import ServerThread, wait_until_indexed

SOAK_SECONDS = 60.0
WRITERS, SEARCHERS = 3, 3
SHARED_IDS = tuple(f"shared-{i}" for i in range(6))
COLLECTION = "soak"
SEED = 424242


@dataclass
class Ledger:
    """What writers sent and what the server acknowledged; shared by every thread."""

    sent: dict[str, set[str]] = field(default_factory=dict)
    # external id -> (sequence of the acknowledged change, text or None when deleted)
    acknowledged: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)

    def will_send(self, documents: list[Document]) -> None:
        with self.lock:
            for document in documents:
                self.sent.setdefault(document.external_id, set()).add(document.text)

    def acknowledge(self, external_id: str, sequence: int, text: str | None) -> None:
        with self.lock:
            known = self.acknowledged.get(external_id)
            if known is None or sequence > known[0]:
                self.acknowledged[external_id] = (sequence, text)

    def count(self, name: str, value: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + value

    def versions(self, external_id: str) -> set[str]:
        with self.lock:
            return set(self.sent.get(external_id, ()))

    def expected(self) -> dict[str, str]:
        return {i: text for i, (_, text) in self.acknowledged.items() if text is not None}


def _text(rng: random.Random, external_id: str) -> str:
    return f"{external_id} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))


def writer(number: int, client: AlbatrossClient, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(f"{SEED}/writer/{number}")
    mine: dict[str, str] = {}
    while not stop.is_set():
        if mine and rng.random() < 0.2:
            ids = rng.sample(sorted(mine), min(len(mine), rng.randint(1, 3)))
            if rng.random() < 0.5:
                ids.append(rng.choice(SHARED_IDS))
            response = client.delete(COLLECTION, ids)
            for external_id in response.deleted:
                ledger.acknowledge(external_id, response.last_sequence, None)
                mine.pop(external_id, None)
            ledger.count("deletes")
            continue
        documents = []
        for _ in range(rng.randint(1, 4)):
            roll = rng.random()
            if mine and roll < 0.25:
                external_id = rng.choice(sorted(mine))
                text = mine[external_id] if rng.random() < 0.3 else _text(rng, external_id)  # same or changed
            elif roll < 0.4:
                external_id = rng.choice(SHARED_IDS)
                text = _text(rng, external_id)
            else:
                external_id = f"w{number}-{len(mine)}-{rng.randrange(10**6)}"
                text = _text(rng, external_id)
            if external_id not in {d.external_id for d in documents}:
                documents.append(Document(external_id, text, metadata={"writer": number}))
        ledger.will_send(documents)
        statuses = client.upsert(COLLECTION, documents)
        for document, status in zip(documents, statuses, strict=True):
            assert status.status in ("written", "unchanged"), status
            if status.status == "written":
                assert status.sequence is not None
                ledger.acknowledge(document.external_id, status.sequence, document.text)
            if not document.external_id.startswith("shared-"):
                mine[document.external_id] = document.text
        ledger.count("upserted documents", len(documents))


def searcher(number: int, client: AlbatrossClient, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(f"{SEED}/searcher/{number}")
    while not stop.is_set():
        with ledger.lock:
            candidates = sorted(ledger.sent)
        if not candidates:
            time.sleep(0.01)
            continue
        target = rng.choice(candidates)
        query = rng.choice(sorted(ledger.versions(target)))
        k = rng.randint(1, 10)
        only = rng.randrange(WRITERS) if rng.random() < 0.3 else None
        metadata_filter = MetadataFilter((Condition("writer", equals=only),)) if only is not None else None
        hits = client.search(COLLECTION, query, k, metadata_filter)
        assert len(hits) <= k and len({h.external_id for h in hits}) == len(hits)
        for hit in hits:
            versions = ledger.versions(hit.external_id)
            assert versions, f"hit {hit.external_id!r} was never sent"
            assert any(hit.text in version for version in versions), f"hit text of {hit.external_id!r}"
            if only is not None:
                assert hit.metadata.get("writer") == only
        ledger.count("searches")
        ledger.count("hits checked", len(hits))


def run_threads(
    workers: list[Callable[[], None]], stop: threading.Event, seconds: float
) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    return errors


@pytest.fixture
def soak_server(tmp_path: Path, tiny_albert_dir: Path) -> Iterator[tuple[RunningServer, ServerThread]]:
    app = AppConfig(
        store=StoreConfig(data_dir=tmp_path / "data"),
        server=ServerConfig(poll_interval_s=0.05, batch_max_wait_ms=1.0, snapshot_every_changes=200),
        default_model=tiny_albert_dir,
    )
    thread = ServerThread()
    running = thread.run(create_server(app, port=0))
    yield running, thread
    thread.run(running.stop(grace_s=1.0))
    thread.close()


def test_concurrent_writers_and_searchers_lose_nothing_and_see_only_sent_documents(
    soak_server: tuple[RunningServer, ServerThread], figures: Counter[str]
) -> None:
    server, loop = soak_server
    ledger = Ledger()
    stop = threading.Event()
    with AlbatrossClient(server.target, timeout=120) as client:
        client.create_collection(COLLECTION)
        workers: list[Callable[[], None]] = [
            *(partial(writer, n, client, ledger, stop) for n in range(WRITERS)),
            *(partial(searcher, n, client, ledger, stop) for n in range(SEARCHERS)),
        ]
        started = time.monotonic()
        errors = run_threads(workers, stop, SOAK_SECONDS)
        assert not errors, f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
        wait_until_indexed(client, COLLECTION, timeout_s=120)
        elapsed = time.monotonic() - started

        config = server.workspace.config.store
        facts = harness.check_store(config, COLLECTION)
        assert facts is not None
        expected = ledger.expected()
        harness.assert_same_documents(facts.documents, expected, "SQL differs from the acknowledged model")
        info = facts.info
        live = loop.run(server.indexes.get(info))
        assert np.array_equal(np.sort(live.ids()), facts.chunk_ids), "the live index differs from SQL"
        harness.check_index(config, facts)
        harness.assert_found_by_own_vector(client, COLLECTION, facts)

    for name, value in ledger.counts.items():
        figures[f"soak {name}"] += value
    figures["soak documents at the end"] += len(expected)
    print(f"\n[soak] {ledger.counts}, {len(expected)} documents at the end, {elapsed:.0f}s")


# --- two ingestion processes on one SQLite collection --------------------------------------------


def _corpus(path: Path, prefix: str, count: int, rng: random.Random) -> dict[str, str]:
    import json

    docs = {f"{prefix}-{i}": _text(rng, f"{prefix}-{i}") for i in range(count)}
    docs.update({f"both-{i}": _text(rng, f"both-{i}") for i in range(20)})  # both processes write these
    path.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()))
    return docs


SPEC_FLAGS = ["--max-length", "32", "--window", "24", "--overlap", "4"]


def test_two_ingest_processes_on_one_sqlite_collection_both_finish_or_one_fails_cleanly(
    tmp_path: Path, tiny_albert_dir: Path, figures: Counter[str]
) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    corpora = {name: _corpus(tmp_path / f"{name}.jsonl", name, 150, rng) for name in ("a", "b")}
    with harness.children() as children:
        for name in corpora:
            argv = ["cli", "ingest", str(tmp_path / f"{name}.jsonl"), "--collection", "race"]
            argv += ["--data-dir", str(data), "--no-progress", *SPEC_FLAGS]
            children.append(harness.start(name, argv, tmp_path, {"ALBATROSS_MODEL": str(tiny_albert_dir)}))
        codes = {child.name: child.finish(300) for child in children}
        logs = {child.name: child.log_tail(20_000) for child in children}

    for name, code in codes.items():
        assert code in (0, 5), f"ingest {name} exited {code}:\n{logs[name]}"
        assert "database is locked" not in logs[name] and "Traceback" not in logs[name], logs[name]
        if code == 5:
            assert "another process is writing" in logs[name]
    assert 0 in codes.values(), logs
    facts = harness.check_store(StoreConfig(data_dir=data), "race")
    assert facts is not None
    for name, docs in corpora.items():
        if codes[name] == 0:
            assert {
                i: t for i, t in docs.items() if not i.startswith("both-")
            }.items() <= facts.documents.items()
    for i in range(20):
        assert facts.documents[f"both-{i}"] in (corpora["a"][f"both-{i}"], corpora["b"][f"both-{i}"])
    figures["concurrent ingest processes"] += 2
    print(f"\n[two ingest processes] exit codes {codes}, {len(facts.documents)} documents")


def test_a_database_locked_past_the_busy_timeout_is_a_clear_message_and_exit_5(
    tmp_path: Path, tiny_albert_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    source = tmp_path / "docs.jsonl"
    source.write_text('{"_id": "x", "text": "a kettle and an umbrella"}\n')
    monkeypatch.setenv("ALBATROSS_MODEL", str(tiny_albert_dir))
    environment = options.config_from_environment
    monkeypatch.setattr(
        options,
        "config_from_environment",
        lambda: replace(environment(), store=replace(environment().store, busy_timeout_s=0.3)),
    )
    argv = ["--collection", "locked", "--data-dir", str(data), "--no-progress", *SPEC_FLAGS]
    assert cli.main(["ingest", str(source), *argv]) == 0
    capsys.readouterr()
    holder = sqlite3.connect(data / "albatross.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        source.write_text('{"_id": "y", "text": "the library closes early"}\n')
        code = cli.main(["ingest", str(source), *argv])
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    error = capsys.readouterr().err
    assert code == 5, error
    assert "another process is writing" in error
    assert "database is locked" not in error and "Traceback" not in error


def test_grpc_status_of_a_busy_store_is_unavailable() -> None:
    # The mapping the server relies on when SQLite stays locked: retryable, not INTERNAL.
    from indexer.errors import StoreBusy
    from searcher.errors import status_for

    assert status_for(StoreBusy("locked"))[0] is grpc.StatusCode.UNAVAILABLE
