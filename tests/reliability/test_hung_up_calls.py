"""Clients that hang up never take the searcher down.

A real ``albatross serve`` process on a loopback port takes hundreds of calls of every kind that
ends early: reflection streams read once and cancelled (what ``grpcurl`` does after listing
services), Upsert streams cancelled 0-150 ms after their first message (Ctrl-C in a client),
streams whose deadline expires while they are open, streams the server aborts mid-way (a later
message naming another collection), and SearchBatch calls cancelled in flight, expired or refused.
Then the server still answers health and search, and every document whose acknowledgement reached
a client is in SQL.

The server runs in its own process so that a crash is a failed assertion with its exit status:
the searcher used to die with SIGSEGV within a few dozen such calls, when telemetry asked grpc for
the peer of a call grpc had already finished.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from indexer.config import StoreConfig
from indexer.records import Document
from indexer.store import Store
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from searcher.servicer import UPSERT_BATCH_SIZE
from tests.searcher.test_grpc_end_to_end import wait_until_indexed

pytestmark = pytest.mark.slow

COLLECTION = "notes"
ROUNDS = 100  # calls of each kind below: 200 reflection streams, 300 Upsert streams, 300 SearchBatch
AT_ONCE = 32  # calls in flight together (the server admits 256)
CALLS_PER_CONNECTION = 10
ACKED_ROUNDS = 12  # aborted streams that first commit a full server-side batch
STARTUP_TIMEOUT_S = 120.0
ENDING = {grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INVALID_ARGUMENT}


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    target: str
    data_dir: Path
    log: Path

    def alive(self, wait_s: float = 0.0) -> str | None:
        """None while the server runs (after ``wait_s`` more), else how it ended and its log's end."""
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            return None
        return f"server exited {self.process.returncode}:\n{self.log.read_text(errors='replace')[-3000:]}"


@dataclass
class Tally:
    """What the storm did: calls per kind and outcome, and the documents acknowledged to a client."""

    outcomes: dict[str, int] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)

    def count(self, kind: str, outcome: str) -> None:
        key = f"{kind}: {outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def acknowledge(self, response: pb.UpsertResponse) -> None:
        written = (pb.DOCUMENT_STATUS_WRITTEN, pb.DOCUMENT_STATUS_UNCHANGED)
        self.acknowledged.update(result.id for result in response.results if result.status in written)


@pytest.fixture
def served(tmp_path: Path, tiny_albert_dir: Path) -> Iterator[Served]:
    port_file, log = tmp_path / "port", tmp_path / "server.log"
    env = {**os.environ, "ALBATROSS_MODEL": str(tiny_albert_dir)}
    command = [sys.executable, "-m", "albatross", "serve", "--data-dir", str(tmp_path / "data")]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*command, "--port", "0", "--port-file", str(port_file)], env=env, stdout=output, stderr=output
        )
    served = Served(process, "", tmp_path / "data", log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not port_file.exists() or not port_file.read_text().strip():
        assert served.alive() is None, served.alive()
        assert time.monotonic() < deadline, "server not up in time"
        time.sleep(0.05)
    served.target = f"127.0.0.1:{port_file.read_text().strip()}"
    try:
        yield served
    finally:
        stopping = time.monotonic()
        process.terminate()
        process.wait(60)
        print(f"[hung up] server stopped in {time.monotonic() - stopping:.1f} s, exit {process.returncode}")


def _document(name: str) -> pb.Document:
    return pb.Document(id=name, text=f"A note called {name} about the kettle and the rain.")


def _code_name(error: grpc.aio.AioRpcError) -> str:
    code = error.code()
    if code is grpc.StatusCode.INTERNAL and "execute_batch" in error.debug_error_string():
        # The client's own grpc refusing a write on a call whose deadline has just passed: the
        # message never left the client, and no status came from the server.
        return "expired before the client could send"
    assert code in ENDING, f"{code}: {error.details()}"
    return code.name


async def reflection_read_once_then_cancel(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    assert any(s.name == "albatross.v1.Search" for s in response.list_services_response.service)
    call.cancel()
    tally.count("reflection", "cancelled after one answer")


async def reflection_deadline_while_open(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        timeout=random.uniform(0.01, 0.1)
    )
    try:
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.read()
        await call.read()  # the stream stays open until the deadline ends it
    except grpc.aio.AioRpcError as error:
        tally.count("reflection", _code_name(error))
    else:
        raise AssertionError("an open reflection stream outlived its deadline")


async def upsert_then_cancel(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    """One message, then the client hangs up 0-150 ms later; or it half-closes, reads the
    acknowledgement and cancels as the stream ends."""
    call = pb_grpc.IngestStub(channel).Upsert()
    await call.write(pb.UpsertRequest(collection=COLLECTION, documents=[_document(f"cancel-{i}")]))
    if i % 2:
        await call.done_writing()
        tally.acknowledge(await call.read())
        call.cancel()
        tally.count("upsert", "acknowledged, then cancelled")
        return
    await asyncio.sleep(random.uniform(0.0, 0.15))
    call.cancel()
    tally.count("upsert", "cancelled before its batch")


async def upsert_deadline_while_open(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    call = pb_grpc.IngestStub(channel).Upsert(timeout=random.uniform(0.02, 0.15))
    try:
        await call.write(pb.UpsertRequest(collection=COLLECTION, documents=[_document(f"late-{i}")]))
        await call.read()  # nothing is written before the stream ends or a batch fills up
    except grpc.aio.AioRpcError as error:
        tally.count("upsert", _code_name(error))
    else:
        raise AssertionError("an open Upsert stream outlived its deadline")


async def upsert_aborted_by_the_server(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    """A second message naming another collection: the server ends the stream INVALID_ARGUMENT.
    Some streams first fill a server-side batch, so an acknowledgement precedes the abort."""
    call = pb_grpc.IngestStub(channel).Upsert()
    size = UPSERT_BATCH_SIZE if i < ACKED_ROUNDS else 1
    documents = [_document(f"aborted-{i}-{n}") for n in range(size)]
    try:
        await call.write(pb.UpsertRequest(collection=COLLECTION, documents=documents))
        if size == UPSERT_BATCH_SIZE:
            tally.acknowledge(await call.read())
        await call.write(pb.UpsertRequest(collection="elsewhere", documents=[_document(f"stray-{i}")]))
        await call.read()
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
        assert "collection" in (error.details() or "")
        tally.count("upsert", "aborted by the server")
    else:
        raise AssertionError("a stream that changed collection was not refused")


def _search_batch(channel: grpc.aio.Channel, *, k: int = 3, timeout: float | None = None) -> grpc.aio.Call:
    request = pb.SearchBatchRequest(collection=COLLECTION, queries=["kettle", "rain on the bus"], k=k)
    return pb_grpc.SearchStub(channel).SearchBatch(request, timeout=timeout)


async def search_batch_cancelled(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    call = _search_batch(channel)
    await asyncio.sleep(random.uniform(0.0, 0.01))
    call.cancel()
    try:
        await call
        tally.count("search batch", "answered before the cancel")
    except asyncio.CancelledError:
        tally.count("search batch", "cancelled")


async def search_batch_past_its_deadline(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    try:
        await _search_batch(channel, timeout=random.uniform(0.0005, 0.01))
        tally.count("search batch", "answered within the deadline")
    except grpc.aio.AioRpcError as error:
        tally.count("search batch", _code_name(error))


async def search_batch_refused(channel: grpc.aio.Channel, i: int, tally: Tally) -> None:
    try:
        await _search_batch(channel, k=0)
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "k" in (error.details() or "")
        tally.count("search batch", "refused by the server")
    else:
        raise AssertionError("k=0 was accepted")


Storm = Callable[[grpc.aio.Channel, int, Tally], Awaitable[None]]
STORMS: tuple[Storm, ...] = (
    reflection_read_once_then_cancel,
    reflection_deadline_while_open,
    upsert_then_cancel,
    upsert_deadline_while_open,
    upsert_aborted_by_the_server,
    search_batch_cancelled,
    search_batch_past_its_deadline,
    search_batch_refused,
)


async def storm(target: str, tally: Tally) -> None:
    """Every kind ROUNDS times, shuffled, AT_ONCE in flight; each of the AT_ONCE clients opens a
    fresh connection every CALLS_PER_CONNECTION calls (a client process that exits takes its
    connection with it)."""
    random.seed(14)
    calls = [(kind, i) for i in range(ROUNDS) for kind in STORMS]
    random.shuffle(calls)
    queue = iter(calls)

    async def client() -> None:
        while share := list(itertools.islice(queue, CALLS_PER_CONNECTION)):
            async with grpc.aio.insecure_channel(target) as channel:
                for kind, i in share:
                    await kind(channel, i, tally)

    await asyncio.gather(*(client() for _ in range(AT_ONCE)))


def test_hundreds_of_hung_up_calls_leave_the_server_answering_and_acknowledged_documents_in_sql(
    served: Served,
) -> None:
    with AlbatrossClient(served.target, timeout=60) as client:
        client.create_collection(COLLECTION)
        tally = Tally()

        try:
            asyncio.run(storm(served.target, tally))
        except BaseException:
            assert (died := served.alive(wait_s=5)) is None, died  # a dead server is the failure to report
            raise

        assert served.alive() is None, served.alive()
        assert sum(tally.outcomes.values()) == ROUNDS * len(STORMS), tally.outcomes
        # The storm did end calls in each way it was meant to (not only by answering them).
        for outcome in (
            "reflection: cancelled after one answer",
            "upsert: cancelled before its batch",
            "upsert: aborted by the server",
            "search batch: refused by the server",
        ):
            assert tally.outcomes.get(outcome, 0) > 0, tally.outcomes
        assert tally.outcomes.get("upsert: DEADLINE_EXCEEDED", 0) > 0, tally.outcomes
        assert len(tally.acknowledged) >= ACKED_ROUNDS * UPSERT_BATCH_SIZE
        with grpc.insecure_channel(served.target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        after = Document("after-the-storm", "The lighthouse keeper counted ships until dawn.")
        assert [s.status for s in client.upsert(COLLECTION, [after])] == ["written"]
        wait_until_indexed(client, COLLECTION)
        assert client.search(COLLECTION, after.text, k=1)[0].external_id == after.external_id

    store = Store.open(StoreConfig(data_dir=served.data_dir))
    try:
        collection_id = store.get_collection(COLLECTION).id
        stored = {d.external_id for d in store.get_documents(collection_id, sorted(tally.acknowledged))}
    finally:
        store.close()
    assert stored == tally.acknowledged
    print(f"\n[hung up] {dict(sorted(tally.outcomes.items()))}; acknowledged {len(tally.acknowledged)}")
