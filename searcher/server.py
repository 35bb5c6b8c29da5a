"""The asyncio gRPC server: the workspace's collaborators wired behind the three servicers.

``create_server`` opens the store, catalog and ingestor (``indexer.workspace``), opens and starts
tailing every collection's index, and serves Collections, Ingest and Search plus the standard health
service and server reflection (so ``grpcurl`` works). ``port=0`` binds a free port; the bound one
is ``RunningServer.port``. ``RunningServer.stop`` reports NOT_SERVING, drains calls in flight, then
takes a final snapshot of every index.
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

from indexer.config import AppConfig
from indexer.errors import InvalidArgument
from indexer.records import CollectionInfo
from indexer.sharding import ShardSpec
from indexer.store import Store
from indexer.workspace import Workspace
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.batching import QueryBatcher
from searcher.decoding import DecodingInterceptor
from searcher.live import LiveIndex, LiveIndexes
from searcher.search import SearchService
from searcher.servicer import CollectionsServicer, IngestServicer, SearchServicer

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

    @property
    def target(self) -> str:
        """Where a client on this machine reaches the server."""
        host = self.workspace.config.server.host
        if host in _WILDCARD_HOSTS:
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop routing), drain, final snapshots, close."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.batcher.close()
        await self.indexes.stop()
        self.executor.shutdown(wait=True)
        self.workspace.close()

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


async def create_server(app: AppConfig, *, port: int | None = None) -> RunningServer:
    """Build and start the server on ``app.server.host`` and ``port`` (default ``app.server.port``)."""
    config = app.server
    bind_port = config.port if port is None else port
    shard = ShardSpec(config.shard_count, config.shard_index)  # invalid: fails before anything opens
    executor = ThreadPoolExecutor(max_workers=EXECUTOR_WORKERS, thread_name_prefix="albatross")
    workspace = Workspace.open(app)
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
    )
    try:
        await indexes.start()
        searcher = SearchService(workspace.store, workspace.catalog, indexes, batcher, executor)
        server = grpc.aio.server(
            # A request that does not decode is INVALID_ARGUMENT naming the field, not UNKNOWN.
            interceptors=[DecodingInterceptor()],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
            ],
        )
        pb_grpc.add_CollectionsServicer_to_server(
            CollectionsServicer(workspace.catalog, searcher, executor), server
        )
        pb_grpc.add_IngestServicer_to_server(
            IngestServicer(workspace.ingestor, executor, on_write=indexes.wake), server
        )
        pb_grpc.add_SearchServicer_to_server(SearchServicer(searcher), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        bound = server.add_insecure_port(f"{config.host}:{bind_port}")
        if bound == 0:
            raise InvalidArgument(f"cannot bind {config.host}:{bind_port}", field="port")
        await server.start()
        for service in ("", *SERVICE_NAMES):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        await batcher.close()
        await indexes.stop()
        executor.shutdown(wait=False)
        workspace.close()
        raise
    log.info("albatross serving on %s:%d", config.host, bound)
    return RunningServer(server, bound, health_servicer, workspace, indexes, batcher, executor)


async def serve(app: AppConfig, *, grace_s: float = 10.0) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the ``albatross serve`` command)."""
    running = await create_server(app)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
        log.info("stopping: draining calls for up to %.0f s", grace_s)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.stop(grace_s)
