"""Crash-harness plumbing: worker processes to start and SIGKILL, the model of what they
acknowledged (from their journals), and the invariants checked after every kill.

Workers (``tests.reliability.worker``) are forked from a ``multiprocessing`` forkserver that has
imported them once; see that module for why.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from indexer.config import StoreConfig
from indexer.engine import create_store_engine
from indexer.index import VectorIndex
from indexer.lexical_sync import SyncedLexicalIndex
from indexer.records import CollectionInfo
from indexer.snapshots import latest
from indexer.store import Store
from indexer.sync import SyncedIndex

READY_TIMEOUT_S = 120.0


def _forkserver() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.worker"])
    return context


@dataclass
class Child:
    """One worker process; ``ready`` appears once it has set itself up."""

    name: str
    process: BaseProcess
    ready: Path
    log: Path
    started: float

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.ready.exists() and self.ready.stat().st_size >= 0):
            if not self.process.is_alive():
                raise AssertionError(f"{self.name} exited ({self.process.exitcode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.01)

    def kill(self) -> bool:
        """SIGKILL; True when it was still running (a real kill), False when it had exited."""
        alive = self.process.is_alive()
        if alive and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(30)
        if alive and self.process.exitcode != -signal.SIGKILL:
            # It ended on its own just before the signal: only a clean exit is acceptable.
            assert self.process.exitcode == 0, f"{self.name} failed:\n{self.log_tail()}"
            return False
        return alive

    def finish(self, timeout_s: float) -> int | None:
        self.process.join(timeout_s)
        return self.process.exitcode


def start(name: str, argv: list[str], folder: Path, environment: Mapping[str, str] | None = None) -> Child:
    """Fork ``python -m tests.reliability.worker ARGV`` from the forkserver; its output goes to
    ``folder/NAME.log``. Worker modes are told where to signal readiness (``cli`` is not)."""
    from tests.reliability import worker

    ready = folder / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log = folder / f"{name}.log"
    if argv[0] != "cli":
        argv = [*argv, "--ready", str(ready)]
    process = _forkserver().Process(
        target=worker.run_child, args=(argv, str(log), dict(environment or {})), daemon=True
    )
    process.start()
    return Child(name, process, ready, log, time.monotonic())


# --- the acknowledged-write model -----------------------------------------------------------------


def _apply(state: dict[str, str], operation: Mapping[str, Any]) -> dict[str, str]:
    after = dict(state)
    if operation["op"] == "upsert":
        after.update(operation["docs"])
    else:
        for external_id in operation["ids"]:
            after.pop(external_id, None)
    return after


@dataclass
class Model:
    """Documents as acknowledged: ``state`` after every acked (or resolved) operation, and the one
    operation in flight when the writer died (``pending``), which may or may not have committed."""

    state: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    sequences: list[int] = field(default_factory=list)
    # How ``resolve`` settled the operation in flight: "committed", "not committed" or None.
    settled: str | None = None


def read_journal(path: Path) -> Model:
    """Replay a journal; a line torn by the kill (no final newline) is cut off the file first."""
    model = Model()
    if not path.exists():
        return model
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    for line in data.decode("utf-8").splitlines():
        entry = json.loads(line)
        if entry["entry"] == "intent":
            assert model.pending is None, f"two operations in flight at once: {model.pending} and {entry}"
            model.pending = entry
        elif entry["entry"] == "ack" or (entry["entry"] == "resolved" and entry["committed"]):
            assert model.pending is not None, f"{entry} acknowledges nothing"
            model.state = _apply(model.state, model.pending)
            model.pending = None
            if entry.get("sequence") is not None:
                model.sequences.append(entry["sequence"])
        elif entry["entry"] == "resolved":
            model.pending = None
    return model


def append_entry(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(json.dumps(entry, sort_keys=True) + "\n")
        journal.flush()
        os.fsync(journal.fileno())


def resolve(path: Path, stored: Mapping[str, str]) -> Model:
    """Check SQL against the journal and settle the operation in flight.

    SQL must hold exactly the acknowledged state, or exactly that state plus the whole operation
    in flight: nothing acknowledged lost, nothing half-written.
    """
    model = read_journal(path)
    stored = dict(stored)
    if model.pending is None:
        assert_same_documents(stored, model.state, "SQL differs from the acknowledged documents")
        return model
    committed = _apply(model.state, model.pending)
    if stored == committed:
        model.state, model.settled = committed, "committed"
        append_entry(path, {"entry": "resolved", "committed": True})
    else:
        assert_same_documents(stored, model.state, "SQL is neither before nor after the operation in flight")
        model.settled = "not committed"
        append_entry(path, {"entry": "resolved", "committed": False})
    model.pending = None
    return model


def assert_same_documents(stored: Mapping[str, str], expected: Mapping[str, str], what: str) -> None:
    if stored == expected:
        return
    lost = sorted(set(expected) - set(stored))[:5]
    extra = sorted(set(stored) - set(expected))[:5]
    changed = sorted(i for i in set(stored) & set(expected) if stored[i] != expected[i])[:5]
    raise AssertionError(f"{what}: lost {lost}, unexpected {extra}, other text {changed}")


# --- invariants of the store ----------------------------------------------------------------------


@dataclass
class StoreFacts:
    """What SQL holds for one collection, checked for internal consistency."""

    info: CollectionInfo
    documents: dict[str, str]
    first_chunk_vector: dict[str, np.ndarray]  # float32 (d,): each document's first chunk
    chunk_ids: np.ndarray  # int64 (n,) ascending
    vectors: np.ndarray  # float32 (n, d)
    last_sequence: int


def _rows(connection: Any, sql: str, **params: Any) -> list[Any]:
    return list(connection.execute(text(sql), params))


def check_store(config: StoreConfig, collection: str) -> StoreFacts | None:
    """Every document whole (chunks 0..n-1 covering its text, each with a finite unit vector), no
    chunk without its document, and a gap-free change log whose replay gives exactly the chunk
    table. None when the collection does not exist yet."""
    store = Store.open(config)
    try:
        try:
            info = store.get_collection(collection)
        except Exception:  # noqa: BLE001 - CollectionNotFound: killed before creating it
            return None
    finally:
        store.close()
    # One read transaction over every query below (the store's engine BEGINs on SQLite; PostgreSQL
    # is asked for a snapshot): a server still compacting moved the log floor and pruned between
    # two separate reads, which looked like a gap in the log.
    engine = create_store_engine(config)
    try:
        with engine.connect() as plain:
            connection = (
                plain.execution_options(isolation_level="REPEATABLE READ")
                if engine.dialect.name == "postgresql"
                else plain
            )
            (last_sequence, log_floor) = _rows(
                connection, "SELECT last_sequence, log_floor FROM collections WHERE id = :c", c=info.id
            )[0]
            documents = _rows(
                connection, "SELECT id, external_id, text FROM documents WHERE collection_id = :c", c=info.id
            )
            chunks = _rows(
                connection,
                'SELECT ch.id, ch.document_id, ch.ordinal, ch.start, ch."end", ch.text, ch.vector '
                "FROM chunks ch JOIN documents d ON d.id = ch.document_id WHERE d.collection_id = :c "
                "ORDER BY ch.document_id, ch.ordinal",
                c=info.id,
            )
            (orphans,) = _rows(
                connection,
                "SELECT count(*) FROM chunks ch LEFT JOIN documents d ON d.id = ch.document_id "
                "WHERE d.id IS NULL",
            )[0]
            changes = _rows(
                connection,
                "SELECT sequence, op, chunk_id FROM changes WHERE collection_id = :c ORDER BY sequence",
                c=info.id,
            )
    finally:
        engine.dispose()
    assert orphans == 0, f"{orphans} chunks without a document"
    by_document: dict[int, list[Any]] = {}
    for chunk in chunks:
        by_document.setdefault(chunk.document_id, []).append(chunk)
    texts, first_chunks = {}, {}
    for document in documents:
        _check_document(document, by_document.get(document.id, []))
        texts[document.external_id] = document.text
        first = by_document[document.id][0]
        first_chunks[document.external_id] = np.frombuffer(first.vector, dtype=np.float32).copy()
    chunk_ids = np.array(sorted(c.id for c in chunks), dtype=np.int64)
    _check_change_log(changes, last_sequence, log_floor, chunk_ids)
    order = {c.id: c.vector for c in chunks}
    vectors = np.array(
        [np.frombuffer(order[i], dtype=np.float32) for i in chunk_ids], dtype=np.float32
    ).reshape(len(chunk_ids), info.dimension)
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    return StoreFacts(info, texts, first_chunks, chunk_ids, vectors, last_sequence)


def _check_document(document: Any, chunks: list[Any]) -> None:
    name = document.external_id
    assert chunks, f"document {name!r} has no chunks"
    assert [c.ordinal for c in chunks] == list(range(len(chunks))), f"{name!r}: chunk ordinals have a gap"
    assert chunks[0].start == 0 and chunks[-1].end == len(document.text), f"{name!r}: chunks miss text"
    for chunk in chunks:
        assert chunk.text == document.text[chunk.start : chunk.end], f"{name!r}: chunk text is not its span"
        assert chunk.vector is not None and len(chunk.vector) > 0, f"{name!r}: chunk without a vector"


def _check_change_log(changes: list[Any], last_sequence: int, log_floor: int, chunk_ids: np.ndarray) -> None:
    """Gap-free above the pruned floor; replayed, it gives the chunk table (from an empty table
    when nothing was pruned; else the chunks it adds and removes are consistent with the table)."""
    sequences = [c.sequence for c in changes]
    assert sequences == list(range(log_floor + 1, last_sequence + 1)), "the change log has a gap or runs past its head"
    live: set[int] = set()
    added: set[int] = set()
    removed: set[int] = set()
    for change in changes:
        if change.op == "add":
            assert change.chunk_id not in added, f"chunk {change.chunk_id} added twice"
            added.add(change.chunk_id)
            live.add(change.chunk_id)
        else:
            assert log_floor > 0 or change.chunk_id in live, f"chunk {change.chunk_id} removed but not live"
            live.discard(change.chunk_id)
            removed.add(change.chunk_id)
    table = set(chunk_ids.tolist())
    if log_floor == 0:
        assert live == table, "replaying the change log does not give the chunk table"
    else:
        assert live <= table and not (removed & table), "the change log contradicts the chunk table"


# --- invariants of the index and its snapshots ----------------------------------------------------


@dataclass
class SnapshotFacts:
    manifests: int
    leftover_temporaries: int
    newest: int | None


def check_snapshots(snapshot_dir: Path, info: CollectionInfo) -> SnapshotFacts:
    """No torn snapshot: every manifest's data file is complete (size and SHA-256) and loads; the
    one the index opens from is the newest."""
    folder = snapshot_dir / info.name
    if not folder.is_dir():
        return SnapshotFacts(0, 0, None)
    sequences = sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())
    for sequence in sequences:
        manifest = json.loads((folder / f"{sequence:020d}.json").read_text(encoding="utf-8"))
        data = (folder / f"{sequence:020d}.faiss").read_bytes()
        assert len(data) == manifest["bytes"], f"snapshot {sequence} is torn ({len(data)} bytes)"
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"], f"snapshot {sequence} is torn"
        assert VectorIndex.from_bytes(data, info.spec.index_spec).dimension == info.dimension
    newest = sequences[-1] if sequences else None
    loaded = latest(snapshot_dir, info)
    assert (loaded.sequence if loaded else None) == newest, "the newest valid snapshot is not the one used"
    temporaries = len(list(folder.glob(".*.tmp")))
    return SnapshotFacts(len(sequences), temporaries, newest)


def check_index(config: StoreConfig, facts: StoreFacts) -> None:
    """Snapshot + replay (what a restarted searcher opens) holds exactly SQL's chunks, and each
    chunk's own vector finds that chunk."""
    store = Store.open(config)
    try:
        index = SyncedIndex.open(store, facts.info, config.snapshot_dir)
        assert index.sequence == facts.last_sequence
        ids = index.ids()
        assert np.array_equal(np.sort(ids), facts.chunk_ids), (
            f"index and SQL disagree: {len(np.setdiff1d(ids, facts.chunk_ids))} extra, "
            f"{len(np.setdiff1d(facts.chunk_ids, ids))} missing"
        )
        # Only an exact index can prove each vector by searching for it: HNSW with many masked
        # (deleted) ids misses some exact matches at its default efSearch, which is recall, not
        # corruption. Ids are compared exactly above for every spec.
        if len(facts.chunk_ids) and facts.info.spec.index_spec == "Flat":
            scores, found = index.search(facts.vectors, 10)
            missed = ~(found == facts.chunk_ids[:, None]).any(axis=1)
            assert np.allclose(scores[missed, 0], 1.0, atol=1e-4), "an indexed vector is not SQL's vector"
        check_lexical_index(store, config, facts)
    finally:
        store.close()


def check_lexical_index(store: Store, config: StoreConfig, facts: StoreFacts) -> None:
    """The lexical folder a killed searcher left (reopened + replayed, or rebuilt when torn, as a
    restarted searcher does) holds exactly SQL's chunks, at SQL's sequence."""
    lexical = SyncedLexicalIndex.open(store, facts.info, config.snapshot_dir)
    try:
        assert lexical.sequence == facts.last_sequence
        ids = lexical.ids()
        assert np.array_equal(ids, facts.chunk_ids), (
            f"lexical index and SQL disagree: {len(np.setdiff1d(ids, facts.chunk_ids))} extra, "
            f"{len(np.setdiff1d(facts.chunk_ids, ids))} missing"
        )
    finally:
        lexical.close()


@contextmanager
def children() -> Iterator[list[Child]]:
    """Started children, all SIGKILLed on the way out (a failing test leaves no process behind)."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            if child.process.is_alive() and child.process.pid is not None:
                os.kill(child.process.pid, signal.SIGKILL)
                child.process.join(10)


def assert_found_by_own_vector(client: Any, collection: str, facts: StoreFacts) -> int:
    """Every document of ``facts`` is among the top 3 hits for the vector SQL holds for its first
    chunk, searched through the server. (Its text is no exact oracle: ingest embeds each window from
    its token ids, ``Encoder.chunk_and_encode``, and a chunk's text re-tokenized may differ at its
    end.) Returns how many were searched."""
    ids = sorted(facts.documents)
    missed = [
        i
        for i in ids
        if i not in {h.external_id for h in client.search_vector(collection, facts.first_chunk_vector[i], k=3)}
    ]
    assert not missed, f"documents not found by their own vector: {missed[:5]}"
    return len(ids)
