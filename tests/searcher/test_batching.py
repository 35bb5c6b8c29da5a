"""The query micro-batcher: concurrent queries share a forward pass, within bounds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest

from indexer.errors import Overloaded
from searcher.batching import QueryBatcher

T = TypeVar("T")


class RecordingEncoder:
    """Vector of a text = [len(text), 1]; records every batch and the thread it ran on."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self._gate = gate
        self._fail = fail

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        self.batches.append(list(texts))
        if self._gate is not None:
            self._gate.wait(timeout=5)
        if self._fail:
            raise RuntimeError("encoder exploded")
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_concurrent_queries_are_embedded_in_one_batch(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> list[np.ndarray]:
        batcher = QueryBatcher(executor, max_size=32, max_wait_s=0.05, max_pending=100)
        texts = ["a" * n for n in range(1, 9)]
        vectors = await asyncio.gather(*(batcher.embed("c", encoder, t) for t in texts))
        await batcher.close()
        return vectors

    vectors = run(scenario())

    assert encoder.batches == [["a" * n for n in range(1, 9)]]
    assert [float(v[0]) for v in vectors] == [float(n) for n in range(1, 9)]


def test_batches_never_exceed_max_size(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=4, max_wait_s=0.05, max_pending=100)
        await asyncio.gather(*(batcher.embed("c", encoder, str(i)) for i in range(10)))
        await batcher.close()

    run(scenario())

    assert max(len(batch) for batch in encoder.batches) <= 4
    assert sorted(t for batch in encoder.batches for t in batch) == sorted(str(i) for i in range(10))


def test_a_lone_query_waits_no_longer_than_max_wait(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> float:
        batcher = QueryBatcher(executor, max_size=32, max_wait_s=0.02, max_pending=100)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.embed("c", encoder, "alone")
        elapsed = loop.time() - start
        await batcher.close()
        return elapsed

    assert run(scenario()) < 1.0
    assert encoder.batches == [["alone"]]


def test_different_lanes_are_batched_separately(executor: ThreadPoolExecutor) -> None:
    first, second = RecordingEncoder(), RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=32, max_wait_s=0.05, max_pending=100)
        await asyncio.gather(
            batcher.embed(1, first, "x"), batcher.embed(2, second, "y"), batcher.embed(1, first, "z")
        )
        await batcher.close()

    run(scenario())

    assert first.batches == [["x", "z"]]
    assert second.batches == [["y"]]


def test_encoding_runs_off_the_event_loop_thread(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=8, max_wait_s=0.001, max_pending=10)
        await batcher.embed("c", encoder, "q")
        await batcher.close()

    run(scenario())

    assert threading.get_ident() not in encoder.threads


def test_a_full_queue_raises_overloaded(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate=gate)

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=8, max_wait_s=0.001, max_pending=2)
        waiting = [asyncio.create_task(batcher.embed("c", encoder, t)) for t in ("a", "b")]
        await asyncio.sleep(0.01)
        assert batcher.pending == 2
        with pytest.raises(Overloaded, match="max_pending_queries=2"):
            await batcher.embed("c", encoder, "c")
        gate.set()
        await asyncio.gather(*waiting)
        assert batcher.pending == 0
        await batcher.close()

    run(scenario())


def test_batch_size_one_disables_batching(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=1, max_wait_s=0.05, max_pending=100)
        await asyncio.gather(*(batcher.embed("c", encoder, str(i)) for i in range(5)))
        await batcher.close()

    run(scenario())

    assert sorted(encoder.batches) == [[str(i)] for i in range(5)]


def test_an_encoder_failure_reaches_every_caller_and_the_lane_survives(
    executor: ThreadPoolExecutor,
) -> None:
    failing = RecordingEncoder(fail=True)
    healthy = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=8, max_wait_s=0.02, max_pending=10)
        results = await asyncio.gather(
            batcher.embed("c", failing, "a"), batcher.embed("c", failing, "b"), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        vector = await batcher.embed("c", healthy, "ok")
        assert float(vector[0]) == 2.0
        await batcher.close()

    run(scenario())


def test_a_cancelled_query_is_not_embedded(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=8, max_wait_s=0.05, max_pending=10)
        doomed = asyncio.create_task(batcher.embed("c", encoder, "doomed"))
        kept = asyncio.create_task(batcher.embed("c", encoder, "kept"))
        await asyncio.sleep(0)
        doomed.cancel()
        await kept
        await batcher.close()

    run(scenario())

    assert encoder.batches == [["kept"]]


def test_close_answers_queued_callers(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    encoder = RecordingEncoder(gate=gate)

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=2, max_wait_s=0.001, max_pending=10)
        queued = [asyncio.create_task(batcher.embed("c", encoder, t)) for t in "abc"]
        await asyncio.sleep(0.01)
        await batcher.close()
        gate.set()
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, Overloaded) for r in results)
        with pytest.raises(Overloaded):
            await batcher.embed("c", encoder, "late")

    run(scenario())


def test_the_queries_of_one_request_are_embedded_together_in_bounded_slices(
    executor: ThreadPoolExecutor,
) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> np.ndarray:
        batcher = QueryBatcher(executor, max_size=4, max_wait_s=0.05, max_pending=100)
        vectors = await batcher.embed_many(encoder, ["a" * n for n in range(1, 11)])
        assert batcher.pending == 0
        await batcher.close()
        return vectors

    vectors = run(scenario())

    assert [len(batch) for batch in encoder.batches] == [4, 4, 2]
    assert vectors.shape == (10, 2)
    assert vectors[:, 0].tolist() == [float(n) for n in range(1, 11)]


def test_the_queries_of_one_request_are_admitted_all_or_none(executor: ThreadPoolExecutor) -> None:
    encoder = RecordingEncoder()

    async def scenario() -> None:
        batcher = QueryBatcher(executor, max_size=4, max_wait_s=0.05, max_pending=3)
        with pytest.raises(Overloaded, match="4 more do not fit"):
            await batcher.embed_many(encoder, ["a", "b", "c", "d"])
        assert batcher.pending == 0
        await batcher.close()

    run(scenario())

    assert encoder.batches == []
