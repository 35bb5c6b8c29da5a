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

Dense answers (a hybrid's dense leg too) are merged only when every shard ranked in one version of
the collection's whitening map: while a refit rolls out, a lagging shard is asked again and, still
behind, fails the call UNAVAILABLE, or, with ``allow_partial``, is left out and named missing
(``searcher.map_versions``). Lexical answers depend on no map.

Collections.Get fans out too (SQL facts from the first shard; index vectors summed, index sequence
the slowest shard's); List, Create, Drop and GetDocuments go to any one shard, since every shard
reads and writes the same store. Writes (Ingest) go to a searcher or the ingestion job directly.

Each shard may have replicas; how a call reaches one (health, failover, hedging) is
``searcher.shards``. A shard with no live replica fails the call UNAVAILABLE, naming the shard,
unless the request sets ``allow_partial``: then the answer is the merge of the shards that
answered, flagged ``partial`` with the missing shards named, never silently short. That holds in
every mode. A partial lexical answer is a partial merge: the shards that answered, merged by BM25
score as in a full answer, each with its own statistics (nothing is recomputed for the shards
missing), so a document with chunks on several shards ranks by those that answered. A partial
hybrid answer fuses both legs without every shard either leg lacked (no live replica, or, for the
dense leg, behind on the whitening map), each named once, in shard order. The router has
the searcher's door (``searcher.endpoint``: token, TLS or mutual TLS, limits, health, reflection,
metrics), and its own TLS, client certificate and token towards the shards (``RouterConfig``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from prometheus_client import CollectorRegistry

from indexer.config import RouterConfig, ServerConfig
from indexer.errors import ShardUnavailable
from indexer.records import Fusion, SearchMode
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import convert
from searcher.endpoint import Endpoint, OnEndpoint, grpc_server, serve_until_signalled, start_endpoint
from searcher.errors import maps_errors
from searcher.fusion import FusionRequest, fuse
from searcher.map_versions import in_one_version, merged_version
from searcher.results import Hit, LegHit
from searcher.search import HYBRID_CANDIDATES
from searcher.shards import CallOptions, Gathered, Replica, ShardFailed, ShardFanOut
from searcher.telemetry import RouterMetrics

log = logging.getLogger(__name__)

ROUTED_SERVICES = tuple(pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Collections", "Search"))


class Scored(Protocol):
    """A document hit as shards return it (``pb.Hit`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def score(self) -> float: ...


S = TypeVar("S", bound=Scored)
T = TypeVar("T")


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


def _forwarded(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A servicer method whose shard failures end the call with the shard's own status code."""

    @functools.wraps(method)
    async def forwarding(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except ShardFailed as failure:
            await context.abort(failure.code, str(failure))
            raise  # unreachable: abort raises

    return forwarding


def _partial(response: pb.SearchResponse | pb.SearchBatchResponse, missing: Sequence[str]) -> None:
    if missing:
        response.partial = True
        response.missing_shards.extend(missing)


def in_shard_order(shards: Sequence[str], *missing: Iterable[str]) -> list[str]:
    """Every shard named in any of ``missing``, once, in the order of ``shards`` (their names):
    a hybrid's legs may each lack a shard, for a different reason (no live replica, or behind on
    the whitening map), and a dense leg names the shards behind after the unreachable ones."""
    named = {name for said in missing for name in said}
    return [shard for shard in shards if shard in named]


def some_shard_answered_both(shards: Sequence[str], dense: Sequence[str], lexical: Sequence[str]) -> None:
    """Refuse a hybrid answer that no shard gave both legs of (``dense`` and ``lexical`` name the
    shards each leg lacked), as ``ShardFanOut.all`` refuses an answer no shard gave. The lexical
    leg lacks only shards with no live replica (the dense leg may lack one behind on the map),
    and it lacks one whenever every shard is lacking (each leg had some shard), so its first is
    the shard named."""
    if len(in_shard_order(shards, dense, lexical)) < len(shards):
        return
    raise ShardUnavailable(
        lexical[0],
        f"no shard answered both legs of the hybrid search: the dense leg lacked {', '.join(dense)}, "
        f"the lexical leg {', '.join(lexical)}",
    )


def _leg_hits(hits: Sequence[pb.Hit], leg: str) -> list[Hit]:
    """One leg's merged answer as domain hits ranked by their place in it (shards rank locally)."""
    return [
        replace(convert.hit_from_pb(hit), legs=(LegHit(leg, hit.score, rank),))
        for rank, hit in enumerate(hits, start=1)
    ]


def merge_warnings(*said: Iterable[str]) -> list[str]:
    """Every warning once, in the order first said: each shard warns about a query alike (the
    vocabulary is the collection's, not the shard's), and the caller should read it once."""
    return list(dict.fromkeys(warning for warnings in said for warning in warnings))


def _embed_warnings(embedded: pb.EmbedResponse, queries: int) -> list[list[str]]:
    """Per query, what the shard that embedded it warned about (nothing from a shard that
    predates ``EmbedResponse.warnings``)."""
    if len(embedded.warnings) != queries:
        return [[] for _ in range(queries)]
    return [list(said.warnings) for said in embedded.warnings]


@dataclass(frozen=True)
class _Ranked:
    """One query's merged answer: its hits, the shards' warnings about it, and the whitening
    version the shards ranked it in (None when they did not say)."""

    hits: list[pb.Hit]
    warnings: list[str]
    whitening_version: int | None

    def to_pb(self, warned: Iterable[str] = ()) -> pb.SearchResponse:
        """With ``warned``: what the shard that embedded the query said about it."""
        response = pb.SearchResponse(hits=self.hits, warnings=merge_warnings(warned, self.warnings))
        _versioned(response, self.whitening_version)
        return response


def _versioned(response: pb.SearchResponse, version: int | None) -> None:
    if version is not None:
        response.whitening_version = version


@dataclass(frozen=True)
class _Batch:
    """A batch's merged answers, query by query, and the shards they were merged without."""

    queries: list[_Ranked]
    missing: list[str]

    def to_pb(self, warned: Sequence[Iterable[str]] | None = None) -> pb.SearchBatchResponse:
        """With ``warned``: per query, what the shard that embedded it said about it. Every
        result is flagged partial as the batch is: each was merged without the same shards."""
        said = warned if warned is not None else [() for _ in self.queries]
        response = pb.SearchBatchResponse()
        for query, warnings in zip(self.queries, said, strict=True):
            result = query.to_pb(warnings)
            _partial(result, self.missing)
            response.results.append(result)
        _partial(response, self.missing)
        return response


def _merged(answers: Sequence[pb.SearchBatchResponse], k: int) -> list[_Ranked]:
    """The shards' answers to a batch, merged query by query."""
    per_query = zip(*(answer.results for answer in answers), strict=True)
    return [
        _Ranked(
            merge_top_k([result.hits for result in query], k),
            merge_warnings(*(result.warnings for result in query)),
            merged_version(query),
        )
        for query in per_query
    ]


class RouterSearchServicer(pb_grpc.SearchServicer):
    """Search and SearchBatch fanned out and merged; Embed and GetDocuments from any shard.

    The shards' warnings about a query (``SearchResponse.warnings``) are passed on, each once;
    when the router embeds a query itself, so that the shards only see its vector, the warnings
    come with the vector (``EmbedResponse.warnings``). Dense answers (a hybrid's dense leg too) are
    merged only when every shard ranked in one whitening version (``searcher.map_versions``)."""

    def __init__(self, shards: ShardFanOut, metrics: RouterMetrics) -> None:
        self._shards = shards
        self._metrics = metrics
        self._names = [shard.name for shard in shards.shards]

    @maps_errors
    @_forwarded
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        # Checked here as a single searcher checks it, so a bad request names the same field
        # whether or not it went through the router.
        asked = convert.search_from_pb(request)
        k = asked.k
        if asked.mode is not SearchMode.DENSE:
            batch = pb.SearchBatchRequest(
                collection=request.collection,
                queries=asked.queries,
                k=k,
                filter=request.filter,
                allow_partial=request.allow_partial,
            )
            if request.HasField("vector"):
                batch.vectors.append(request.vector)
            answered = await self._not_dense(context, batch, asked.mode, asked.fusion)
            (result,) = answered.to_pb().results
            return result
        warned: list[str] = []
        if not request.HasField("vector"):
            # Embed once, on one shard, instead of once per shard: the forward pass is most of a
            # search's cost, and every shard would compute the same vector.
            embed = pb.EmbedRequest(collection=request.collection, queries=[request.query])
            embedded = await self._embed(context, embed)
            request = _with_vector(request, embedded.vectors[0])
            (warned,) = _embed_warnings(embedded, 1)
        gathered = await in_one_version(
            self._shards,
            self._metrics,
            context,
            request.collection,
            "Search",
            lambda r, o: r.search.Search(request, timeout=o.timeout, metadata=o.metadata),
            allow_partial=request.allow_partial,
        )
        response = pb.SearchResponse(
            hits=merge_top_k([answer.hits for answer in gathered.answers], k),
            warnings=merge_warnings(warned, *(answer.warnings for answer in gathered.answers)),
        )
        _versioned(response, merged_version(gathered.answers))
        _partial(response, in_shard_order(self._names, gathered.missing))
        return response

    @maps_errors
    @_forwarded
    async def SearchBatch(
        self, request: pb.SearchBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchBatchResponse:
        asked = convert.search_batch_from_pb(request)
        k = asked.k
        if asked.mode is not SearchMode.DENSE:
            answered = await self._not_dense(context, request, asked.mode, asked.fusion)
            return answered.to_pb()
        warned: list[list[str]] = [[] for _ in request.vectors]
        if not request.vectors:
            embed = pb.EmbedRequest(collection=request.collection, queries=request.queries)
            embedded = await self._embed(context, embed)
            request = _with_vectors(request, list(embedded.vectors))
            warned = _embed_warnings(embedded, len(request.vectors))
        gathered = await self._leg(context, request)
        missing = in_shard_order(self._names, gathered.missing)
        return _Batch(_merged(gathered.answers, k), missing).to_pb(warned)

    async def _leg(
        self, context: grpc.aio.ServicerContext, request: pb.SearchBatchRequest
    ) -> Gathered[pb.SearchBatchResponse]:
        """One leg (the request's mode) on every shard. With the request's ``allow_partial``, a
        shard with no live replica is left out and named missing, as in a dense search; without
        it, it fails the call UNAVAILABLE. The dense leg is gathered in one whitening version
        (with ``allow_partial``, without the shards still behind); the lexical leg depends on no
        map."""

        def call(r: Replica, o: CallOptions) -> Awaitable[pb.SearchBatchResponse]:
            return r.search.SearchBatch(request, timeout=o.timeout, metadata=o.metadata)

        if request.mode == pb.SEARCH_MODE_LEXICAL:
            gathered = await self._shards.all(
                context, "SearchBatch", call, allow_partial=request.allow_partial
            )
        else:
            gathered = await in_one_version(
                self._shards,
                self._metrics,
                context,
                request.collection,
                "SearchBatch",
                call,
                allow_partial=request.allow_partial,
            )
        return gathered

    async def _not_dense(
        self,
        context: grpc.aio.ServicerContext,
        request: pb.SearchBatchRequest,
        mode: SearchMode,
        fusion: FusionRequest,
    ) -> _Batch:
        """Lexical: fanned out and merged by score. Hybrid: each leg merged, then fused here,
        without the shards either leg lacked (with ``allow_partial``)."""
        lexical = pb.SearchBatchRequest(
            collection=request.collection,
            queries=request.queries,
            filter=request.filter,
            mode=pb.SEARCH_MODE_LEXICAL,
            allow_partial=request.allow_partial,
        )
        if mode is SearchMode.LEXICAL:
            lexical.k = request.k
            return self._without_missing(request.k, await self._leg(context, lexical))
        depth = max(request.k, HYBRID_CANDIDATES)
        lexical.k = depth
        vectors = list(request.vectors)
        warned: list[list[str]] = [[] for _ in request.queries]
        if not vectors:
            embed = pb.EmbedRequest(collection=request.collection, queries=request.queries)
            embedded = await self._embed(context, embed)
            vectors = list(embedded.vectors)
            warned = _embed_warnings(embedded, len(vectors))
        dense = pb.SearchBatchRequest(
            collection=request.collection,
            vectors=vectors,
            k=depth,
            filter=request.filter,
            allow_partial=request.allow_partial,
        )
        described = pb.GetCollectionRequest(name=request.collection)
        dense_shards, lexical_shards, collection = await asyncio.gather(
            self._leg(context, dense),
            self._leg(context, lexical),
            self._shards.any(
                context,
                "GetCollection",
                lambda r, o: r.collections.GetCollection(described, timeout=o.timeout, metadata=o.metadata),
            ),
        )
        chosen = fusion.resolve(Fusion.of(convert.spec_from_pb(collection.collection.spec)))
        some_shard_answered_both(self._names, dense_shards.missing, lexical_shards.missing)
        dense_legs = self._without_missing(depth, dense_shards, lexical_shards)
        lexical_legs = self._without_missing(depth, lexical_shards, dense_shards)
        fused = [
            _Ranked(
                [
                    convert.hit_to_pb(hit)
                    for hit in fuse(
                        _leg_hits(d.hits, "dense"), _leg_hits(w.hits, "lexical"), chosen, request.k, query=text
                    )
                ],
                merge_warnings(said, d.warnings, w.warnings),
                d.whitening_version,
            )
            for d, w, said, text in zip(
                dense_legs.queries, lexical_legs.queries, warned, request.queries, strict=True
            )
        ]
        return _Batch(fused, dense_legs.missing)

    def _without_missing(
        self,
        k: int,
        gathered: Gathered[pb.SearchBatchResponse],
        other: Gathered[pb.SearchBatchResponse] | None = None,
    ) -> _Batch:
        """``gathered`` merged per query without the shards it or ``other`` (a hybrid's other
        leg) lacks: a shard one leg lacks is left out of both, so that a shard named missing
        contributes no document, rather than documents ranked by one leg only."""
        missing = in_shard_order(self._names, gathered.missing, other.missing if other else ())
        kept = [
            answer
            for shard, answer in zip(gathered.shards, gathered.answers, strict=True)
            if shard.name not in missing
        ]
        return _Batch(_merged(kept, k), missing)

    @maps_errors
    @_forwarded
    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        return await self._embed(context, request)

    async def _embed(self, context: grpc.aio.ServicerContext, request: pb.EmbedRequest) -> pb.EmbedResponse:
        """Query vectors from one shard in turn (a shard validates the texts and names them)."""
        return await self._shards.any(
            context, "Embed", lambda r, o: r.search.Embed(request, timeout=o.timeout, metadata=o.metadata)
        )

    @maps_errors
    @_forwarded
    async def GetDocuments(
        self, request: pb.GetDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDocumentsResponse:
        return await self._shards.any(
            context,
            "GetDocuments",
            lambda r, o: r.search.GetDocuments(request, timeout=o.timeout, metadata=o.metadata),
        )


class RouterCollectionsServicer(pb_grpc.CollectionsServicer):
    """GetCollection aggregates the shards' index stats; the rest goes to any one shard (writes
    unhedged: a second CreateCollection in flight would only answer ALREADY_EXISTS)."""

    def __init__(self, shards: ShardFanOut) -> None:
        self._shards = shards

    @maps_errors
    @_forwarded
    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCollectionResponse:
        gathered = await self._shards.all(
            context,
            "GetCollection",
            lambda r, o: r.collections.GetCollection(request, timeout=o.timeout, metadata=o.metadata),
        )
        answers = gathered.answers
        merged = pb.GetCollectionResponse()
        merged.CopyFrom(answers[0])
        merged.stats.index_vectors = sum(answer.stats.index_vectors for answer in answers)
        merged.stats.index_sequence = min(answer.stats.index_sequence for answer in answers)
        merged.stats.lexical_chunks = sum(answer.stats.lexical_chunks for answer in answers)
        merged.stats.lexical_sequence = min(answer.stats.lexical_sequence for answer in answers)
        return merged

    @maps_errors
    @_forwarded
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        return await self._shards.any(
            context,
            "ListCollections",
            lambda r, o: r.collections.ListCollections(request, timeout=o.timeout, metadata=o.metadata),
        )

    @maps_errors
    @_forwarded
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        return await self._shards.any(
            context,
            "CreateCollection",
            lambda r, o: r.collections.CreateCollection(request, timeout=o.timeout, metadata=o.metadata),
            hedge=False,
        )

    @maps_errors
    @_forwarded
    async def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DropCollectionResponse:
        return await self._shards.any(
            context,
            "DropCollection",
            lambda r, o: r.collections.DropCollection(request, timeout=o.timeout, metadata=o.metadata),
            hedge=False,
        )


@dataclass
class RunningRouter(OnEndpoint):
    endpoint: Endpoint
    shards: ShardFanOut
    metrics: RouterMetrics
    drain_delay_s: float

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.endpoint.drain(self.drain_delay_s, grace_s)
        await self.shards.close()


async def create_router(
    config: ServerConfig, router: RouterConfig, *, port: int | None = None
) -> RunningRouter:
    """Start a router on ``config.host`` and ``port`` (default ``config.port``) in front of
    ``router.shards``, with ``config``'s security and limits towards its callers."""
    metrics = RouterMetrics(CollectorRegistry())
    fan_out = ShardFanOut(router, config.max_message_bytes, metrics)
    server = grpc_server(config, metrics)
    pb_grpc.add_SearchServicer_to_server(RouterSearchServicer(fan_out, metrics), server)
    pb_grpc.add_CollectionsServicer_to_server(RouterCollectionsServicer(fan_out), server)
    try:
        endpoint = await start_endpoint(server, config, metrics, ROUTED_SERVICES, port=port)
    except BaseException:
        await fan_out.close()
        raise
    fan_out.start()
    log.info(
        "router over %d shards (%s to the shards): %s",
        len(router.shards),
        "TLS" if router.tls else "plaintext",
        ", ".join(shard.name for shard in fan_out.shards),
    )
    return RunningRouter(endpoint, fan_out, metrics, config.drain_delay_s)


async def serve_router(config: ServerConfig, router: RouterConfig, *, port_file: Path | None = None) -> None:
    """Route until SIGINT or SIGTERM (``albatross serve --router --shards ...``)."""
    await serve_until_signalled(lambda: create_router(config, router), config, port_file=port_file)
