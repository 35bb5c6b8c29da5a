"""The shard router: one Search endpoint in front of searchers that each hold a shard.

Every shard server (``albatross serve --shard I/N``) holds the chunks whose ids hash to its shard
(``indexer.sharding``) and answers with its own top-k documents. The router sends each request to
every shard concurrently (grpc.aio), with the caller's remaining deadline, and merges the answers
with ``merge_top_k``. Because a document scores what its best chunk scores, and that chunk sits on
exactly one shard, the merged top-k equals an unsharded searcher's top-k: any document ranked above
it globally also ranks above it on that shard, so it is inside that shard's top-k.

Lexical searches fan out the same way and merge by BM25 score. Each shard scores with its own
statistics (document count, document frequencies, average length of the chunks it holds), as
Elasticsearch does by default (query_then_fetch): chunk-id hashing spreads chunks evenly, so the
statistics agree closely on a large collection, but a term held by a handful of chunks gets a
somewhat different IDF on each shard, and the merged lexical ranking is close to, not always
exactly, an unsharded searcher's. A hybrid search is fused here, not on the shards: RRF needs the
global rank of a document in each leg, so the router merges each leg across shards first (dense
by vector, lexical by text, ``HYBRID_CANDIDATES`` deep), then fuses them with the request's
fusion or the collection's default.

Collections.Get fans out too (SQL facts from the first shard; index vectors summed, index sequence
the slowest shard's); List, Create, Drop and GetDocuments go to the first shard, since every shard
reads and writes the same store. Writes (Ingest) go to a searcher or the ingestion job directly.
A shard's failure fails the call with the shard's status code, named: a partial answer would be
silently wrong.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from indexer.config import ServerConfig
from indexer.errors import InvalidArgument
from indexer.records import SearchMode
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import convert
from searcher.errors import maps_errors
from searcher.fusion import FusionRequest, fuse
from searcher.results import Hit, LegHit
from searcher.search import HYBRID_CANDIDATES

log = logging.getLogger(__name__)

ROUTED_SERVICES = tuple(pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Collections", "Search"))
# Headers passed on to the shards, so a token the router was given reaches them.
FORWARDED_HEADERS = frozenset({"authorization"})

T = TypeVar("T")


class Scored(Protocol):
    """A document hit as shards return it (``pb.Hit`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def score(self) -> float: ...


S = TypeVar("S", bound=Scored)


def merge_top_k(answers: Sequence[Sequence[S]], k: int) -> list[S]:
    """The best ``k`` documents of several shards' ranked answers.

    Highest score first, ties broken by document id (ascending) so the order is deterministic;
    a document returned by several shards (its chunks live on several) appears once, with its best
    score. Inputs are not modified.
    """
    best: dict[str, S] = {}
    for answer in answers:
        for hit in answer:
            kept = best.get(hit.id)
            if kept is None or hit.score > kept.score:
                best[hit.id] = hit
    return sorted(best.values(), key=lambda hit: (-hit.score, hit.id))[:k]


def parse_shards(raw: str) -> list[str]:
    """``host:port,host:port`` -> targets, in shard order; at least one."""
    targets = [part.strip() for part in raw.split(",") if part.strip()]
    if not targets:
        raise InvalidArgument("--shards needs at least one host:port", field="shards")
    for target in targets:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"shard {target!r} is not host:port", field="shards")
    if len(set(targets)) != len(targets):
        raise InvalidArgument("--shards names a shard twice", field="shards")
    return targets


@dataclass
class _Shard:
    target: str
    channel: grpc.aio.Channel
    search: pb_grpc.SearchStub
    collections: pb_grpc.CollectionsStub


class ShardFanOut:
    """Concurrent calls to every shard under the caller's deadline; a failure names its shard."""

    def __init__(self, targets: Sequence[str], max_message_bytes: int) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._shards = []
        self._turn = -1
        for target in targets:
            channel = grpc.aio.insecure_channel(target, options=options)
            self._shards.append(
                _Shard(target, channel, pb_grpc.SearchStub(channel), pb_grpc.CollectionsStub(channel))
            )

    @property
    def targets(self) -> list[str]:
        return [shard.target for shard in self._shards]

    async def close(self) -> None:
        for shard in self._shards:
            await shard.channel.close()

    async def all(
        self, context: grpc.aio.ServicerContext, call: Callable[[_Shard, _CallOptions], Awaitable[T]]
    ) -> list[T]:
        """``call`` on every shard at once; the first failure cancels the rest and ends the call."""
        options = _call_options(context)
        tasks = [asyncio.ensure_future(call(shard, options)) for shard in self._shards]
        try:
            return list(await asyncio.gather(*tasks))
        except grpc.aio.AioRpcError as error:
            for task in tasks:
                task.cancel()
            target = next(
                s.target for s, t in zip(self._shards, tasks, strict=True) if _failed_with(t, error)
            )
            await context.abort(error.code(), f"shard {target}: {error.details()}")
            raise  # unreachable: abort raises

    async def first(
        self, context: grpc.aio.ServicerContext, call: Callable[[_Shard, _CallOptions], Awaitable[T]]
    ) -> T:
        """``call`` on the first shard (what every shard would answer alike: the shared store)."""
        return await self._one(self._shards[0], context, call)

    async def any(
        self, context: grpc.aio.ServicerContext, call: Callable[[_Shard, _CallOptions], Awaitable[T]]
    ) -> T:
        """``call`` on the next shard in turn, for work any shard does alike (embedding a query),
        so it spreads over the shards instead of loading the first."""
        self._turn = (self._turn + 1) % len(self._shards)
        return await self._one(self._shards[self._turn], context, call)

    async def _one(
        self,
        shard: _Shard,
        context: grpc.aio.ServicerContext,
        call: Callable[[_Shard, _CallOptions], Awaitable[T]],
    ) -> T:
        try:
            return await call(shard, _call_options(context))
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), f"shard {shard.target}: {error.details()}")
            raise


def _with_vector(request: pb.SearchRequest, vector: pb.Vector) -> pb.SearchRequest:
    """``request`` searching by ``vector`` (the text is dropped: shards would embed it again)."""
    copy = pb.SearchRequest()
    copy.CopyFrom(request)
    copy.ClearField("query")
    copy.vector.CopyFrom(vector)
    return copy


def _with_vectors(request: pb.SearchBatchRequest, vectors: list[pb.Vector]) -> pb.SearchBatchRequest:
    copy = pb.SearchBatchRequest()
    copy.CopyFrom(request)
    copy.ClearField("queries")
    copy.vectors.extend(vectors)
    return copy


def _failed_with(task: asyncio.Future[object], error: BaseException) -> bool:
    return task.done() and not task.cancelled() and task.exception() is error


@dataclass(frozen=True)
class _CallOptions:
    timeout: float | None
    metadata: tuple[tuple[str, str], ...]


def _call_options(context: grpc.aio.ServicerContext) -> _CallOptions:
    """The caller's remaining deadline and forwarded headers, for the calls to the shards."""
    remaining = context.time_remaining()
    metadata = tuple(
        (item.key, item.value)
        for item in (context.invocation_metadata() or ())
        if item.key in FORWARDED_HEADERS and isinstance(item.value, str)
    )
    return _CallOptions(timeout=remaining, metadata=metadata)


def _leg_hits(hits: Sequence[pb.Hit], leg: str) -> list[Hit]:
    """One leg's merged answer as domain hits ranked by their place in it (shards rank locally)."""
    return [
        replace(convert.hit_from_pb(hit), legs=(LegHit(leg, hit.score, rank),))
        for rank, hit in enumerate(hits, start=1)
    ]


class RouterSearchServicer(pb_grpc.SearchServicer):
    """Search and SearchBatch fanned out and merged; GetDocuments from the first shard."""

    def __init__(self, shards: ShardFanOut) -> None:
        self._shards = shards

    @maps_errors
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        # Checked here as a single searcher checks it, so a bad request names the same field
        # whether or not it went through the router.
        asked = convert.search_from_pb(request)
        k = asked.k
        if asked.mode is not SearchMode.DENSE:
            batch = pb.SearchBatchRequest(
                collection=request.collection, queries=asked.queries, k=k, filter=request.filter
            )
            if request.HasField("vector"):
                batch.vectors.append(request.vector)
            (hits,) = await self._not_dense(context, batch, asked.mode, asked.fusion)
            return pb.SearchResponse(hits=hits)
        if not request.HasField("vector"):
            # Embed once, on one shard, instead of once per shard: the forward pass is most of a
            # search's cost, and every shard would compute the same vector.
            embed = pb.EmbedRequest(collection=request.collection, queries=[request.query])
            embedded = await self._embed(context, embed)
            request = _with_vector(request, embedded.vectors[0])
        answers = await self._shards.all(
            context, lambda s, o: s.search.Search(request, timeout=o.timeout, metadata=o.metadata)
        )
        return pb.SearchResponse(hits=merge_top_k([answer.hits for answer in answers], k))

    @maps_errors
    async def SearchBatch(
        self, request: pb.SearchBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchBatchResponse:
        asked = convert.search_batch_from_pb(request)
        k = asked.k
        if asked.mode is not SearchMode.DENSE:
            ranked = await self._not_dense(context, request, asked.mode, asked.fusion)
            return pb.SearchBatchResponse(results=[pb.SearchResponse(hits=hits) for hits in ranked])
        if not request.vectors:
            embed = pb.EmbedRequest(collection=request.collection, queries=request.queries)
            embedded = await self._embed(context, embed)
            request = _with_vectors(request, list(embedded.vectors))
        answers = await self._shards.all(
            context, lambda s, o: s.search.SearchBatch(request, timeout=o.timeout, metadata=o.metadata)
        )
        per_query = zip(*(answer.results for answer in answers), strict=True)
        return pb.SearchBatchResponse(
            results=[
                pb.SearchResponse(hits=merge_top_k([result.hits for result in query], k))
                for query in per_query
            ]
        )

    async def _leg(
        self, context: grpc.aio.ServicerContext, request: pb.SearchBatchRequest, k: int
    ) -> list[list[pb.Hit]]:
        """One leg (the request's mode) on every shard, merged per query."""
        answers = await self._shards.all(
            context, lambda s, o: s.search.SearchBatch(request, timeout=o.timeout, metadata=o.metadata)
        )
        per_query = zip(*(answer.results for answer in answers), strict=True)
        return [merge_top_k([result.hits for result in query], k) for query in per_query]

    async def _not_dense(
        self,
        context: grpc.aio.ServicerContext,
        request: pb.SearchBatchRequest,
        mode: SearchMode,
        fusion: FusionRequest,
    ) -> list[list[pb.Hit]]:
        """Lexical: fanned out and merged by score. Hybrid: each leg merged, then fused here."""
        lexical = pb.SearchBatchRequest(
            collection=request.collection,
            queries=request.queries,
            filter=request.filter,
            mode=pb.SEARCH_MODE_LEXICAL,
        )
        if mode is SearchMode.LEXICAL:
            lexical.k = request.k
            return await self._leg(context, lexical, request.k)
        depth = max(request.k, HYBRID_CANDIDATES)
        lexical.k = depth
        vectors = list(request.vectors)
        if not vectors:
            embed = pb.EmbedRequest(collection=request.collection, queries=request.queries)
            vectors = list((await self._embed(context, embed)).vectors)
        dense = pb.SearchBatchRequest(
            collection=request.collection, vectors=vectors, k=depth, filter=request.filter
        )
        described = pb.GetCollectionRequest(name=request.collection)
        dense_hits, lexical_hits, collection = await asyncio.gather(
            self._leg(context, dense, depth),
            self._leg(context, lexical, depth),
            self._shards.first(
                context,
                lambda s, o: s.collections.GetCollection(described, timeout=o.timeout, metadata=o.metadata),
            ),
        )
        chosen = fusion.resolve(convert.lexical_from_pb(collection.collection.spec.lexical).fusion)
        return [
            [
                convert.hit_to_pb(hit)
                for hit in fuse(_leg_hits(d, "dense"), _leg_hits(w, "lexical"), chosen, request.k)
            ]
            for d, w in zip(dense_hits, lexical_hits, strict=True)
        ]

    @maps_errors
    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        return await self._embed(context, request)

    async def _embed(self, context: grpc.aio.ServicerContext, request: pb.EmbedRequest) -> pb.EmbedResponse:
        """Query vectors from one shard in turn (a shard validates the texts and names them)."""
        return await self._shards.any(
            context, lambda s, o: s.search.Embed(request, timeout=o.timeout, metadata=o.metadata)
        )

    @maps_errors
    async def GetDocuments(
        self, request: pb.GetDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDocumentsResponse:
        return await self._shards.first(
            context, lambda s, o: s.search.GetDocuments(request, timeout=o.timeout, metadata=o.metadata)
        )


class RouterCollectionsServicer(pb_grpc.CollectionsServicer):
    """GetCollection aggregates the shards' index stats; the rest goes to the first shard."""

    def __init__(self, shards: ShardFanOut) -> None:
        self._shards = shards

    @maps_errors
    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCollectionResponse:
        answers = await self._shards.all(
            context, lambda s, o: s.collections.GetCollection(request, timeout=o.timeout, metadata=o.metadata)
        )
        merged = pb.GetCollectionResponse()
        merged.CopyFrom(answers[0])
        merged.stats.index_vectors = sum(answer.stats.index_vectors for answer in answers)
        merged.stats.index_sequence = min(answer.stats.index_sequence for answer in answers)
        merged.stats.lexical_chunks = sum(answer.stats.lexical_chunks for answer in answers)
        merged.stats.lexical_sequence = min(answer.stats.lexical_sequence for answer in answers)
        return merged

    @maps_errors
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        return await self._shards.first(
            context,
            lambda s, o: s.collections.ListCollections(request, timeout=o.timeout, metadata=o.metadata),
        )

    @maps_errors
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        return await self._shards.first(
            context,
            lambda s, o: s.collections.CreateCollection(request, timeout=o.timeout, metadata=o.metadata),
        )

    @maps_errors
    async def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DropCollectionResponse:
        return await self._shards.first(
            context,
            lambda s, o: s.collections.DropCollection(request, timeout=o.timeout, metadata=o.metadata),
        )


@dataclass
class RunningRouter:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    shards: ShardFanOut
    host: str

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "[::]", "") else self.host
        return f"{host}:{self.port}"

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.shards.close()


async def create_router(
    config: ServerConfig, shards: Sequence[str], *, port: int | None = None
) -> RunningRouter:
    """Start a router on ``config.host`` and ``port`` (default ``config.port``) in front of ``shards``."""
    targets = parse_shards(",".join(shards))
    fan_out = ShardFanOut(targets, config.max_message_bytes)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ]
    )
    pb_grpc.add_SearchServicer_to_server(RouterSearchServicer(fan_out), server)
    pb_grpc.add_CollectionsServicer_to_server(RouterCollectionsServicer(fan_out), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*ROUTED_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bind_port = config.port if port is None else port
    bound = server.add_insecure_port(f"{config.host}:{bind_port}")
    if bound == 0:
        await fan_out.close()
        raise InvalidArgument(f"cannot bind {config.host}:{bind_port}", field="port")
    await server.start()
    for service in ("", *ROUTED_SERVICES):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "albatross router on %s:%d over %d shards: %s", config.host, bound, len(targets), ", ".join(targets)
    )
    return RunningRouter(server, bound, health_servicer, fan_out, config.host)


async def serve_router(config: ServerConfig, shards: Sequence[str], *, grace_s: float = 10.0) -> None:
    """Route until SIGINT or SIGTERM (``albatross serve --router --shards ...``)."""
    running = await create_router(config, shards)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.stop(grace_s)
