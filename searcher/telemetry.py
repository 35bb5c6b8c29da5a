"""Server telemetry: Prometheus metrics and one JSON access-log line per RPC.

``TelemetryInterceptor`` is the outermost interceptor, so it also sees the calls that
authentication refuses. For every call it takes the request id from the ``x-request-id`` metadata
(or makes one), returns it in the trailing metadata, counts the call by method and status code,
times it, and logs::

    {"event": "rpc", "request_id": "...", "method": "/albatross.v1.Search/Search",
     "code": "OK", "duration_ms": 3.1, "peer": "ipv4:127.0.0.1:51234"}

Metrics (all in the registry given, see ``ServerMetrics``)::

    albatross_grpc_server_started_total{grpc_service, grpc_method}
    albatross_grpc_server_handled_total{grpc_service, grpc_method, grpc_code}
    albatross_grpc_server_handling_seconds{grpc_service, grpc_method}     histogram
    albatross_http_server_handled_total{route, method, status}             (searcher.http)
    albatross_http_server_handling_seconds{route, method}                 histogram
    albatross_query_batch_size                                            histogram (texts per forward pass)
    albatross_query_queue_depth                                           queries admitted, not answered
    albatross_index_vectors{collection}                                   vectors in this server's index
    albatross_ingest_documents_total{collection, outcome}                 (indexer.telemetry)
    albatross_ingest_documents_read_total{collection}

and on a router (``RouterMetrics``), beside the three ``grpc_server`` series::

    albatross_router_shard_seconds{shard, replica, method, grpc_code}     histogram, one replica call
    albatross_router_shard_errors_total{shard, replica, grpc_code}
    albatross_router_hedges_total{shard}                                  second replica asked
    albatross_router_fan_out_seconds{method}                              histogram, all shards
    albatross_router_partial_answers_total{method}
    albatross_router_replica_up{shard, replica}                           1 SERVING, 0 not
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from indexer.telemetry import IngestMetrics
from searcher.method_handlers import Behaviour, Continuation, behaviour_of, with_behaviour

ACCESS_LOGGER = "searcher.access"
REQUEST_ID = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
# Health probes arrive every few seconds from every load balancer: logged only at DEBUG.
QUIET_METHOD_PREFIX = "/grpc.health.v1.Health/"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _IndexVectors(Collector):
    """``albatross_index_vectors{collection}``, read from the live indexes at scrape time."""

    def __init__(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        self._sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "albatross_index_vectors", "Vectors in this server's index, by collection", labels=["collection"]
        )
        for collection, vectors in sorted(self._sizes().items()):
            family.add_metric([collection], vectors)
        yield family


class RpcMetrics:
    """Calls started, handled (by code) and their latency, registered in ``registry``: what the
    telemetry interceptor records on every server, searcher or router."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ["grpc_service", "grpc_method"]
        self.started = Counter("albatross_grpc_server_started", "RPCs started", labels, registry=registry)
        self.handled = Counter(
            "albatross_grpc_server_handled",
            "RPCs completed, by status code (errors are the codes other than OK)",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "albatross_grpc_server_handling_seconds",
            "Time from the start of an RPC to its status",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )


class ServerMetrics(RpcMetrics):
    """The searcher's metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.http_handled = Counter(
            "albatross_http_server_handled",
            "HTTP requests completed, by route template and HTTP status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "albatross_http_server_handling_seconds",
            "Time from the start of an HTTP request to its response",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "albatross_query_batch_size",
            "Query texts embedded per encoder forward pass",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "albatross_query_queue_depth", "Queries admitted and not yet embedded", registry=registry
        )
        self.ingest = IngestMetrics(registry)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report ``depth()`` (e.g. ``QueryBatcher.pending``) at every scrape."""
        self.queue_depth.set_function(lambda: float(depth()))

    def watch_indexes(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        """Report ``sizes()`` (collection -> vectors, e.g. ``LiveIndexes.vector_counts``) at every scrape."""
        self.registry.register(_IndexVectors(sizes))

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)


class RouterMetrics(RpcMetrics):
    """The router's metrics: its own calls (``RpcMetrics``) and its calls to the shards."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.shard_latency = Histogram(
            "albatross_router_shard_seconds",
            "Time of one call to one replica of a shard, by outcome",
            ["shard", "replica", "method", "grpc_code"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.shard_errors = Counter(
            "albatross_router_shard_errors",
            "Calls to a replica that failed, by status code",
            ["shard", "replica", "grpc_code"],
            registry=registry,
        )
        self.hedges = Counter(
            "albatross_router_hedges", "Requests sent to a second replica of a slow one", ["shard"], registry=registry
        )
        self.fan_out = Histogram(
            "albatross_router_fan_out_seconds",
            "Time from sending a request to every shard to the last shard's answer",
            ["method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.partial = Counter(
            "albatross_router_partial_answers",
            "Answers given without some shards (the request allowed it)",
            ["method"],
            registry=registry,
        )
        self.mixed_versions = Counter(
            "albatross_router_mixed_whitening_versions",
            "Dense merges whose shards answered in different whitening versions (a refit rolling "
            "out), by what came of it: retried (one version after asking again), partial (merged without "
            "the shards behind, for a request allowing it) or refused",
            ["method", "outcome"],
            registry=registry,
        )
        self.replica_up = Gauge(
            "albatross_router_replica_up",
            "1 while the replica's health check says SERVING, else 0",
            ["shard", "replica"],
            registry=registry,
        )


def request_id_of(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The client's ``x-request-id`` when it is short printable text, else a new random one."""
    for key, value in metadata or ():
        if key == REQUEST_ID and isinstance(value, str):
            if 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isprintable():
                return value
            break
    return uuid.uuid4().hex


def _split(method: str) -> tuple[str, str]:
    """``/albatross.v1.Search/Search`` -> (``albatross.v1.Search``, ``Search``)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with: set by ``abort``/``set_code``, else implied by ``error``."""
    # A client that goes away cancels a unary call and closes a streaming one (GeneratorExit).
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    # grpc answers UNKNOWN for an exception the servicer let escape.
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


@dataclass(frozen=True)
class _Started:
    """When a call began, and who called (read while the call was live)."""

    at: float
    peer: str


@dataclass
class _Call:
    """One RPC being observed."""

    method: str
    request_id: str
    metrics: RpcMetrics | None
    log: logging.Logger

    def begin(self, context: grpc.aio.ServicerContext) -> _Started:
        context.set_trailing_metadata(((REQUEST_ID, self.request_id),))
        if self.metrics is not None:
            self.metrics.started.labels(*_split(self.method)).inc()
        # The peer is read now, inside grpc's task for the call. When that task ends grpc releases
        # its core call and leaves a NULL in its place; a stream the client hung up on is closed
        # later by the event loop (asyncgen finalizer), so ``end`` can run after that, and
        # ``context.peer()`` there calls into the NULL call: SIGSEGV, the whole server gone.
        return _Started(time.perf_counter(), context.peer())

    def end(self, context: grpc.aio.ServicerContext, started: _Started, error: BaseException | None) -> None:
        """Count and log the call. Reads only Python-side state of ``context``: see ``begin``."""
        seconds = time.perf_counter() - started.at
        code = _code_of(context, error)
        if self.metrics is not None:
            service, name = _split(self.method)
            self.metrics.handled.labels(service, name, code.name).inc()
            self.metrics.latency.labels(service, name).observe(seconds)
        level = logging.DEBUG if self.method.startswith(QUIET_METHOD_PREFIX) else logging.INFO
        if self.log.isEnabledFor(level):
            self.log.log(level, json.dumps(self._entry(started.peer, code, seconds)))

    def _entry(self, peer: str, code: grpc.StatusCode, seconds: float) -> dict[str, Any]:
        return {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": "rpc",
            "request_id": self.request_id,
            "method": self.method,
            "code": code.name,
            "duration_ms": round(seconds * 1000, 3),
            "peer": peer,
        }

    def unary(self, behaviour: Behaviour) -> Behaviour:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = self.begin(context)
            error: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:  # recorded, then re-raised untouched
                error = exc
                raise
            finally:
                self.end(context, started, error)

        return observed

    def streaming(self, behaviour: Behaviour) -> Behaviour:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = self.begin(context)
            error: BaseException | None = None
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as exc:  # recorded, then re-raised untouched
                error = exc
                raise
            finally:
                self.end(context, started, error)

        return observed


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and logs every call; ``metrics`` None logs only."""

    def __init__(self, metrics: RpcMetrics | None, access_log: logging.Logger | None = None) -> None:
        self._metrics = metrics
        self._log = access_log or logging.getLogger(ACCESS_LOGGER)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        call = _Call(
            method=handler_call_details.method,  # type: ignore[attr-defined]
            request_id=request_id_of(handler_call_details.invocation_metadata),  # type: ignore[attr-defined]
            metrics=self._metrics,
            log=self._log,
        )
        behaviour = behaviour_of(handler)
        observed = call.streaming(behaviour) if handler.response_streaming else call.unary(behaviour)
        return with_behaviour(handler, observed)


def configure_access_log(stream: TextIO = sys.stderr) -> None:
    """Access lines go to ``stream`` as bare JSON (one object per line, no log prefix)."""
    access = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
