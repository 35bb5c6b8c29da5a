"""The asyncio gRPC server: the workspace's collaborators wired behind the three servicers.

``create_server`` opens the store, catalog and ingestor (``indexer.workspace``), opens and starts
tailing every collection's index, and serves Collections, Ingest and Search plus the standard health
service and server reflection (so ``grpcurl`` works). ``port=0`` binds a free port; the bound one
is ``RunningServer.port``. ``RunningServer.stop`` reports NOT_SERVING, drains calls in flight, then
takes a final snapshot of every index.

The door (interceptors, token, TLS, limits, health, reflection, metrics endpoint, signals) is
``searcher.endpoint``'s, shared with the router. At most ``max_concurrent_rpcs`` calls run at once,
as the query batcher admits at most ``max_pending_queries``, so memory stays bounded under any load.

With ``http_port`` the HTTP/JSON API (``searcher.http``) serves the same operations on the same
loop, over the same domain objects, with the same token, TLS files and limits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from indexer.config import AppConfig, LogRetention, ServerConfig
from indexer.records import CollectionInfo
from indexer.sharding import ShardSpec
from indexer.store import Store
from indexer.workspace import Workspace
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.batching import QueryBatcher
from searcher.endpoint import (
    Endpoint,
    OnEndpoint,
    grpc_server,
    reachable_host,
    serve_until_signalled,
    start_endpoint,
)
from searcher.filtered import AllowedIdsCache
from searcher.http.app import HttpEndpoint, start_http
from searcher.http.handlers import Handlers
from searcher.live import LiveIndex, LiveIndexes, LiveLexicalIndex
from searcher.operations import CollectionOperations, SearchOperations, UpsertWriter
from searcher.search import SearchService
from searcher.servicer import CollectionsServicer, IngestServicer, SearchServicer
from searcher.telemetry import ServerMetrics

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Collections", "Ingest", "Search")
)
# Threads for blocking work: encoder forward passes, SQL, FAISS. The forward pass is itself
# multi-threaded (torch), so a few workers are enough to overlap SQL with encoding.
EXECUTOR_WORKERS = 4


@dataclass
class RunningServer(OnEndpoint):
    """A started server and what ``stop`` must shut down, in order."""

    endpoint: Endpoint
    workspace: Workspace
    indexes: LiveIndexes
    batcher: QueryBatcher
    executor: ThreadPoolExecutor
    metrics: ServerMetrics
    http: HttpEndpoint | None = None

    @property
    def http_url(self) -> str | None:
        """Base URL of the HTTP API for a client on the same host, None when it is off."""
        if self.http is None:
            return None
        config = self.workspace.config.server
        scheme = "https" if config.tls else "http"
        return f"{scheme}://{reachable_host(config.http_host or config.host)}:{self.http.port}"

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING (gRPC health and ``/readyz`` together), drain both front-ends
        (``Endpoint.drain``), then final snapshots and close."""
        drain_delay_s = self.workspace.config.server.drain_delay_s
        if self.http is None:
            await self.endpoint.drain(drain_delay_s, grace_s)
        else:
            self.http.readiness.serving = False
            await asyncio.gather(self.endpoint.drain(drain_delay_s, grace_s), self._close_http(drain_delay_s))
        await self.batcher.close()
        await self.indexes.stop()
        self.executor.shutdown(wait=True)
        self.workspace.close()

    async def _close_http(self, drain_delay_s: float) -> None:
        await asyncio.sleep(drain_delay_s)  # as gRPC: still answering while load balancers notice
        if self.http is not None:
            await self.http.close()

    async def wait_for_termination(self) -> None:
        await self.endpoint.server.wait_for_termination()


def _index_opener(
    store: Store, snapshot_dir: Path, shard: ShardSpec, retention: LogRetention
) -> Callable[[CollectionInfo], LiveIndex]:
    """Opens the index of a collection, or of this server's shard of it (with its own snapshots).

    The reader name is this host and snapshot folder: a pod restarted on its own volume takes its
    old place in the change log's reader list instead of adding a new one."""
    from indexer.sync import SyncedIndex

    folder = snapshot_dir if shard.whole else snapshot_dir / shard.name
    reader = f"{socket.gethostname()}:{folder.resolve()}"

    def open_index(info: CollectionInfo) -> LiveIndex:
        return SyncedIndex.open(
            store, info, folder, keep=shard.chunk_filter(), reader=reader, retention=retention
        )

    return open_index


def _lexical_opener(
    store: Store, snapshot_dir: Path, shard: ShardSpec
) -> Callable[[CollectionInfo], LiveLexicalIndex]:
    """Opens the lexical index of a collection (or shard), beside its vector snapshots."""
    from indexer.lexical_sync import SyncedLexicalIndex

    folder = snapshot_dir if shard.whole else snapshot_dir / shard.name

    def open_lexical(info: CollectionInfo) -> LiveLexicalIndex:
        return SyncedLexicalIndex.open(store, info, folder, keep=shard.chunk_filter())

    return open_lexical


async def _http_endpoint(
    config: ServerConfig,
    workspace: Workspace,
    searcher: SearchService,
    on_write: Callable[[], None],
    executor: ThreadPoolExecutor,
    metrics: ServerMetrics,
    port: int | None,
) -> HttpEndpoint | None:
    """The HTTP API over the same domain objects as the servicers; None when ``port`` is."""
    if port is None:
        return None
    writer = UpsertWriter(
        workspace.ingestor, executor, on_write=on_write, on_outcomes=metrics.ingest.count_batch
    )
    handlers = Handlers(
        CollectionOperations(workspace.catalog, searcher, executor),
        SearchOperations(searcher),
        writer,
        max_line_bytes=config.max_message_bytes,
    )
    return await start_http(config, handlers, metrics, port=port)


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
        _index_opener(workspace.store, app.store.snapshot_dir, shard, config.log_retention),
        executor,
        poll_interval_s=config.poll_interval_s,
        snapshot_every_changes=config.snapshot_every_changes,
        open_lexical=_lexical_opener(workspace.store, app.store.snapshot_dir, shard),
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
    http: HttpEndpoint | None = None
    try:
        await indexes.start()
        searcher = SearchService(
            workspace.store,
            workspace.catalog,
            indexes,
            batcher,
            executor,
            AllowedIdsCache(config.filter_cache_ids),
        )
        server = grpc_server(config, metrics)
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
        http = await _http_endpoint(config, workspace, searcher, indexes.wake, executor, metrics, bind_http)
        endpoint = await start_endpoint(server, config, metrics, SERVICE_NAMES, port=bind_port)
    except BaseException:
        if http is not None:
            await http.close()
        await batcher.close()
        await indexes.stop()
        executor.shutdown(wait=False)
        workspace.close()
        raise
    running = RunningServer(endpoint, workspace, indexes, batcher, executor, metrics, http)
    if running.http_url is not None:
        log.info("HTTP API and search page on %s/ (API docs at /docs)", running.http_url)
    return running


async def serve(app: AppConfig, *, port_file: Path | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the ``albatross serve`` command)."""
    await serve_until_signalled(lambda: create_server(app), app.server, port_file=port_file)
