"""Read replicas: two searchers on one PostgreSQL store, each tailing the change log into its own
FAISS index. A write acknowledged by one is searchable on the other within the staleness bound:
one poll interval (0.2 s here) plus the catch-up itself; the test allows 5 s on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.config import AppConfig, ServerConfig, StoreConfig
from indexer.records import Document, SearchMode
from searcher.client import AlbatrossClient
from searcher.server import create_server
from tests.distributed.corpus import documents
from tests.postgres import PostgresServer
from tests.searcher.test_grpc_end_to_end import ServerThread

POLL_INTERVAL_S = 0.2
STALENESS_BOUND_S = 5.0
COLLECTION = "replicated"


@pytest.fixture(scope="module")
def replicas(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[tuple[AlbatrossClient, AlbatrossClient]]:
    """(writer, reader): two servers with their own data folders (snapshots), one database."""
    db_url = postgres_server.new_database()
    thread = ServerThread()
    servers = []
    try:
        for name in ("writer", "reader"):
            app = AppConfig(
                store=StoreConfig(data_dir=tmp_path_factory.mktemp(name), db_url=db_url),
                server=ServerConfig(host="127.0.0.1", poll_interval_s=POLL_INTERVAL_S, batch_max_wait_ms=1.0),
                default_model=tiny_albert_dir,
            )
            servers.append(thread.run(create_server(app, port=0)))
        with (
            AlbatrossClient(servers[0].target, timeout=300) as writer,
            AlbatrossClient(servers[1].target, timeout=300) as reader,
        ):
            writer.create_collection(COLLECTION)
            yield writer, reader
    finally:
        for server in servers:
            thread.run(server.stop(grace_s=1.0))
        thread.close()


def seconds_until(condition: Callable[[], bool], bound_s: float = STALENESS_BOUND_S) -> float:
    """How long ``condition`` took to hold; fails past ``bound_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > bound_s:
            raise AssertionError(f"not visible within {bound_s} s")
        time.sleep(0.02)
    return time.monotonic() - started


def found(client: AlbatrossClient, document: Document) -> bool:
    """Whether a search for the document's text returns it (k covers the whole small collection,
    so this does not depend on how well the tiny random model ranks)."""
    return document.external_id in {h.external_id for h in client.search(COLLECTION, document.text, k=100)}


def test_a_write_through_one_replica_is_found_through_the_other(
    replicas: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    writer, reader = replicas
    batch = documents(12)

    statuses = writer.upsert(COLLECTION, batch)

    assert {s.status for s in statuses} == {"written"}
    lag = seconds_until(lambda: all(found(reader, doc) for doc in batch))
    print(f"\nreplica staleness after upsert: {lag:.2f} s (poll {POLL_INTERVAL_S} s)")
    stats = reader.get_collection(COLLECTION).stats
    assert stats.index_sequence == stats.last_sequence == max(s.sequence or 0 for s in statuses)


def test_a_delete_through_one_replica_disappears_from_the_other(
    replicas: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    writer, reader = replicas
    batch = documents(12)
    writer.upsert(COLLECTION, batch)
    seconds_until(lambda: found(reader, batch[3]))

    writer.delete(COLLECTION, [batch[3].external_id])

    lag = seconds_until(lambda: not found(reader, batch[3]))
    print(f"\nreplica staleness after delete: {lag:.2f} s")
    assert reader.get_documents(COLLECTION, [batch[3].external_id]) == []


def test_an_update_replaces_the_old_text_on_the_other_replica(
    replicas: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    writer, reader = replicas
    original = documents(12)[5]
    writer.upsert(COLLECTION, [original])
    changed = Document(original.external_id, "Swallows return to the barn every spring.", title="changed")

    writer.upsert(COLLECTION, [changed])

    def shows_new_text() -> bool:
        hits = reader.search(COLLECTION, changed.text, k=100)
        return [h.text for h in hits if h.external_id == changed.external_id] == [changed.text]

    seconds_until(shows_new_text)
    assert reader.get_documents(COLLECTION, [changed.external_id])[0].title == "changed"


def test_the_other_replicas_lexical_index_tails_the_log_too(
    replicas: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    writer, reader = replicas
    part = Document("part-doc", "Replacement gasket, part number KT-5521-Q, for the older pumps.")
    writer.upsert(COLLECTION, [part])

    def first_lexical(query: str) -> str | None:
        hits = reader.search(COLLECTION, query, k=1, mode=SearchMode.LEXICAL)
        return hits[0].external_id if hits else None

    lag = seconds_until(lambda: first_lexical("KT-5521-Q") == "part-doc")
    print(f"\nreplica lexical staleness after upsert: {lag:.2f} s")
    writer.upsert(COLLECTION, [Document("part-doc", "The gasket is now part number KT-7730-R.")])
    seconds_until(lambda: first_lexical("KT-7730-R") == "part-doc")
    assert first_lexical("5521") is None  # the old text left the lexical index
    writer.delete(COLLECTION, ["part-doc"])
    seconds_until(lambda: first_lexical("7730") is None)

    def lexical_caught_up() -> bool:
        stats = reader.get_collection(COLLECTION).stats
        return stats.lexical_sequence == stats.last_sequence and stats.lexical_chunks == stats.chunks

    seconds_until(lexical_caught_up)
