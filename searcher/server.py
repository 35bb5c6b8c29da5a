"""The asyncio gRPC server: the workspace's collaborators wired behind the three servicers.

``create_server`` opens the store, catalog and ingestor (``indexer.workspace``), opens and starts
tailing every collection's index, and serves Collections, Ingest and Search plus the standard health
service and server reflection (so ``grpcurl`` works). ``port=0`` binds a free port; the bound one
is ``RunningServer.port``. ``RunningServer.stop`` reports NOT_SERVING, drains calls in flight, then
takes a final snapshot of every index.

Every call passes the telemetry interceptor (metrics, access log, request id), then the token check
when a token is configured; TLS (optionally mutual) when a certificate is. At most
``max_concurrent_rpcs`` calls run at once: grpc answers the next ones RESOURCE_EXHAUSTED, as the
query batcher does past ``max_pending_queries``, so memory stays bounded under any load.

With ``http_port`` the HTTP/JSON API (``searcher.http``) serves the same operations on the same
loop, over the same domain objects, with the same token, TLS files and limits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from indexer.config import AppConfig, ServerConfig
from indexer.errors import InvalidArgument
from indexer.records import CollectionInfo
from indexer.sharding import ShardSpec
from indexer.snapshots import atomic_write
from indexer.store import Store
from indexer.telemetry import MetricsEndpoint, start_metrics_endpoint
from indexer.workspace import Workspace
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import auth
from searcher.batching import QueryBatcher
from searcher.decoding import DecodingInterceptor
from searcher.http.app import HttpEndpoint, start_http
from searcher.http.handlers import Handlers
from searcher.live import LiveIndex, LiveIndexes
from searcher.operations import CollectionOperations, SearchOperations, UpsertWriter
from searcher.search import SearchService
from searcher.servicer import CollectionsServicer, IngestServicer, SearchServicer
from searcher.telemetry import ServerMetrics, TelemetryInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Collections", "Ingest", "Search")
)
# Threads for blocking work: encoder forward passes, SQL, FAISS. The forward pass is itself
# multi-threaded (torch), so a few workers are enough to overlap SQL with encoding.
EXECUTOR_WORKERS = 4
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


@dataclass
class RunningServer:
    """A started server and what ``stop`` must shut down, in order."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    workspace: Workspace
    indexes: LiveIndexes
    batcher: QueryBatcher
    executor: ThreadPoolExecutor
    metrics: ServerMetrics
    metrics_endpoint: MetricsEndpoint | None = None
    http: HttpEndpoint | None = None

    @property
    def target(self) -> str:
        """Where a client on this machine reaches the server."""
        host = self.workspace.config.server.host
        if host in _WILDCARD_HOSTS:
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """Base URL of the HTTP API for a client on this machine, None when it is off."""
        if self.http is None:
            return None
        config = self.workspace.config.server
        host = config.http_host or config.host
        host = "127.0.0.1" if host in _WILDCARD_HOSTS else host
        return f"{'https' if config.tls else 'http'}://{host}:{self.http.port}"

    @property
    def metrics_port(self) -> int | None:
        """Port of the Prometheus endpoint, None when it is off."""
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop routing), drain, final snapshots, close.

        For ``drain_delay_s`` new calls are still served while health says NOT_SERVING: a load
        balancer needs a probe interval or two to notice before the port stops answering.
        """
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.readiness.serving = False
        await asyncio.sleep(self.workspace.config.server.drain_delay_s)
        await asyncio.gather(self.server.stop(grace_s), *([self.http.close()] if self.http else []))
        await self.batcher.close()
        await self.indexes.stop()
        self.executor.shutdown(wait=True)
        self.workspace.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _index_opener(
    store: Store, snapshot_dir: Path, shard: ShardSpec
) -> Callable[[CollectionInfo], LiveIndex]:
    """Opens the index of a collection, or of this server's shard of it (with its own snapshots)."""
    from indexer.sync import SyncedIndex

    folder = snapshot_dir if shard.whole else snapshot_dir / shard.name

    def open_index(info: CollectionInfo) -> LiveIndex:
        return SyncedIndex.open(store, info, folder, keep=shard.chunk_filter())

    return open_index


def _grpc_server(config: ServerConfig, metrics: ServerMetrics) -> grpc.aio.Server:
    # Telemetry first (outermost): it also counts and logs the calls authentication refuses.
    # Decoding last: a request that does not decode is INVALID_ARGUMENT, once authenticated.
    return grpc.aio.server(
        interceptors=[TelemetryInterceptor(metrics), *auth.interceptors(config), DecodingInterceptor()],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )


def _bind(server: grpc.aio.Server, config: ServerConfig, port: int) -> int:
    address = f"{config.host}:{port}"
    credentials = auth.server_credentials(config)
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise InvalidArgument(f"cannot bind {address}", field="port")
    return bound


async def _http_endpoint(
    config: ServerConfig, workspace: Workspace, searcher: SearchService, on_write: Callable[[], None],
    executor: ThreadPoolExecutor, metrics: ServerMetrics, port: int | None,
) -> HttpEndpoint | None:
    """The HTTP API over the same domain objects as the servicers; None when ``http_port`` is."""
    if port is None:
        return None
    writer = UpsertWriter(workspace.ingestor, executor, on_write=on_write, on_outcomes=metrics.ingest.count_batch)
    handlers = Handlers(
        CollectionOperations(workspace.catalog, searcher, executor),
        SearchOperations(searcher),
        writer,
        max_line_bytes=config.max_message_bytes,
    )
    return await start_http(config, handlers, metrics, port=port)


def _metrics_endpoint(config: ServerConfig, metrics: ServerMetrics) -> MetricsEndpoint | None:
    if config.metrics_port is None:
        return None
    return start_metrics_endpoint(metrics.registry, config.metrics_host or config.host, config.metrics_port)


async def create_server(
    app: AppConfig, *, port: int | None = None, http_port: int | None = None
) -> RunningServer:
    """Build and start the server on ``app.server.host`` and ``port`` (default ``app.server.port``),
    and the HTTP API on ``http_port`` (default ``app.server.http_port``; None: off)."""
    config = app.server
    bind_port = config.port if port is None else port
    bind_http = config.http_port if http_port is None else http_port
    shard = ShardSpec(config.shard_count, config.shard_index)  # invalid: fails before anything opens
    executor = ThreadPoolExecutor(max_workers=EXECUTOR_WORKERS, thread_name_prefix="albatross")
    metrics = ServerMetrics(CollectorRegistry())
    # Writes by other processes reach this server within its poll interval; so may a drop.
    workspace = Workspace.open(app, collection_ttl_s=config.poll_interval_s)
    indexes = LiveIndexes(
        workspace.store,
        _index_opener(workspace.store, app.store.snapshot_dir, shard),
        executor,
        poll_interval_s=config.poll_interval_s,
        snapshot_every_changes=config.snapshot_every_changes,
    )
    batcher = QueryBatcher(
        executor,
        max_size=config.batch_max_size,
        max_wait_s=config.batch_max_wait_ms / 1000,
        max_pending=config.max_pending_queries,
        on_batch=metrics.observe_batch,
    )
    metrics.watch_queue(lambda: batcher.pending)
    metrics.watch_indexes(indexes.vector_counts)
    endpoint: MetricsEndpoint | None = None
    http: HttpEndpoint | None = None
    try:
        await indexes.start()
        searcher = SearchService(workspace.store, workspace.catalog, indexes, batcher, executor)
        server = _grpc_server(config, metrics)
        pb_grpc.add_CollectionsServicer_to_server(
            CollectionsServicer(workspace.catalog, searcher, executor), server
        )
        pb_grpc.add_IngestServicer_to_server(
            IngestServicer(
                workspace.ingestor, executor, on_write=indexes.wake, on_outcomes=metrics.ingest.count_batch
            ),
            server,
        )
        pb_grpc.add_SearchServicer_to_server(SearchServicer(searcher), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        bound = _bind(server, config, bind_port)
        endpoint = _metrics_endpoint(config, metrics)
        http = await _http_endpoint(config, workspace, searcher, indexes.wake, executor, metrics, bind_http)
        await server.start()
        for service in ("", *SERVICE_NAMES):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        if http is not None:
            await http.close()
        if endpoint is not None:
            endpoint.close()
        await batcher.close()
        await indexes.stop()
        executor.shutdown(wait=False)
        workspace.close()
        raise
    log.info(
        "albatross serving on %s:%d (%s%s)",
        config.host,
        bound,
        "TLS" if config.tls else "plaintext",
        ", token required" if config.auth_token else "",
    )
    running = RunningServer(server, bound, health_servicer, workspace, indexes, batcher, executor, metrics)
    running.metrics_endpoint = endpoint
    running.http = http
    if endpoint is not None:
        log.info("metrics on http://%s:%d/metrics", config.metrics_host or config.host, endpoint.port)
    if running.http_url is not None:
        log.info("HTTP API and search page on %s/ (API docs at /docs)", running.http_url)
    return running


async def serve(app: AppConfig, *, port_file: Path | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the ``albatross serve`` command).

    ``port_file`` receives the bound port once the server answers (written atomically, so a
    reader never sees a partial number): how a supervisor learns the port of ``--port 0``.
    """
    running = await create_server(app)
    grace_s = app.server.grace_s
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        # Written only now: whoever reads the port may signal at once, and the handlers are in place.
        if port_file is not None:
            atomic_write(port_file, f"{running.port}\n".encode())
        await stopping.wait()
        log.info(
            "stopping: NOT_SERVING for %.1f s, then draining calls for up to %.0f s",
            app.server.drain_delay_s,
            grace_s,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.stop(grace_s)
        if port_file is not None:
            port_file.unlink(missing_ok=True)
