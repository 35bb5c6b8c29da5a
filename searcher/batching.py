"""Query micro-batching: concurrent query texts for one encoder are embedded in one forward pass.

One ALBERT forward over 32 short queries costs little more than over one, so under load the
searcher waits at most ``max_wait_s`` for company before embedding. Each embedding space (the
caller's lane key, e.g. the collection id) has one lane: a queue drained by one task that runs ``encoder.encode`` in a thread executor (never on the event
loop) one batch at a time; queries arriving while a batch is being embedded form the next batch.

Admission is bounded: at most ``max_pending`` queries may wait or be in flight across all lanes;
the next one raises ``Overloaded`` (RESOURCE_EXHAUSTED) instead of queueing without limit.
``max_size=1`` disables batching (each query is embedded alone, concurrently) for benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from indexer.errors import InvalidArgument, Overloaded
from searcher.blocking import BlockingCalls


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 (n, d)."""
        ...


@dataclass
class _Query:
    text: str
    future: asyncio.Future[np.ndarray]


@dataclass
class _Lane:
    encoder: TextEncoder
    queue: asyncio.Queue[_Query] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    # The batch being collected or embedded, so that ``close`` can answer its callers.
    current: list[_Query] = field(default_factory=list)


class QueryBatcher:
    """Embeds query texts, batching concurrent ones per encoder. Use from one event loop.

    ``on_batch(size)`` is told the number of texts of every forward pass (for metrics).
    """

    def __init__(
        self,
        executor: Executor,
        *,
        max_size: int,
        max_wait_s: float,
        max_pending: int,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        if max_size < 1:
            raise InvalidArgument("batch_max_size must be at least 1", field="batch_max_size")
        if max_wait_s < 0:
            raise InvalidArgument("batch_max_wait_ms must not be negative", field="batch_max_wait_ms")
        if max_pending < 1:
            raise InvalidArgument("max_pending_queries must be at least 1", field="max_pending_queries")
        self._run = BlockingCalls(executor)
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._max_pending = max_pending
        self._on_batch = on_batch
        self._pending = 0
        self._lanes: dict[Hashable, _Lane] = {}
        self._closed = False

    @property
    def max_size(self) -> int:
        """Most queries embedded in one forward pass (1: batching is off)."""
        return self._max_size

    @property
    def pending(self) -> int:
        """Queries admitted and not yet answered."""
        return self._pending

    async def embed(self, lane_key: Hashable, encoder: TextEncoder, text: str) -> np.ndarray:
        """One query -> float32 (d,) with ``encoder``; ``Overloaded`` when the queue is full.

        Queries with the same ``lane_key`` (one per embedding space, e.g. the collection id) are
        batched together; the latest ``encoder`` given for a key embeds the next batch.
        """
        self._admit(1)
        try:
            if self._max_size == 1:
                self._on_batch(1)
                vectors = await self._run(encoder.encode, [text])
                return vectors[0]
            future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
            self._lane(lane_key, encoder).queue.put_nowait(_Query(text, future))
            return await future
        finally:
            self._pending -= 1

    async def embed_many(self, encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
        """The queries of one request -> float32 (n, d), admitted all or none.

        They already form a batch, so they skip the lanes and are embedded in slices of at most
        ``max_size`` texts.
        """
        self._admit(len(texts))
        try:
            slices = [texts[i : i + self._max_size] for i in range(0, len(texts), self._max_size)]
            parts = []
            for part in slices:
                self._on_batch(len(part))
                parts.append(await self._run(encoder.encode, list(part)))
            return np.concatenate(parts)
        finally:
            self._pending -= len(texts)

    def _admit(self, count: int) -> None:
        """Count ``count`` more pending queries, or raise ``Overloaded`` if they do not fit."""
        if self._closed:
            raise Overloaded("the searcher is shutting down")
        if self._pending + count > self._max_pending:
            raise Overloaded(
                f"{self._pending} queries are already waiting to be embedded and {count} more do "
                f"not fit (max_pending_queries={self._max_pending}); retry later"
            )
        self._pending += count

    def _lane(self, key: Hashable, encoder: TextEncoder) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = _Lane(encoder)
            lane.worker = asyncio.get_running_loop().create_task(self._drain(lane))
            self._lanes[key] = lane
        lane.encoder = encoder
        return lane

    async def _collect(self, lane: _Lane) -> list[_Query]:
        """The next batch: the first query, then whatever arrives within ``max_wait_s``."""
        lane.current = batch = [await lane.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while len(batch) < self._max_size:
            if not lane.queue.empty():
                batch.append(lane.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(lane.queue.get(), remaining))
            except TimeoutError:
                break
        # Callers whose deadline expired while waiting no longer need a vector.
        lane.current = [query for query in batch if not query.future.done()]
        return lane.current

    async def _drain(self, lane: _Lane) -> None:
        while True:
            batch = await self._collect(lane)
            if not batch:
                continue
            texts = [query.text for query in batch]
            self._on_batch(len(texts))
            try:
                vectors = await self._run(lane.encoder.encode, texts)
            except Exception as error:  # delivered to every caller of the batch
                for query in batch:
                    if not query.future.done():
                        query.future.set_exception(error)
                continue
            for query, vector in zip(batch, vectors, strict=True):
                if not query.future.done():
                    query.future.set_result(vector)

    async def close(self) -> None:
        """Stop the lanes; queries still queued fail with ``Overloaded``."""
        self._closed = True
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            if lane.worker is not None:
                lane.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.worker
            while not lane.queue.empty():
                lane.current.append(lane.queue.get_nowait())
            for query in lane.current:
                if not query.future.done():
                    query.future.set_exception(Overloaded("the searcher is shutting down"))
