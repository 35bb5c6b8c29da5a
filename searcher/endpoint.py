"""One gRPC endpoint, assembled alike for the searcher (``searcher.server``) and the router.

Every endpoint has the same door: the telemetry interceptor (metrics, access log, request id)
outermost, so it also counts the calls authentication refuses; the bearer-token check when a
token is configured; request decoding last. Message size limits and ``max_concurrent_rpcs``
(past it grpc answers RESOURCE_EXHAUSTED) come from the ``ServerConfig``; TLS (mutual with a
client CA) when a certificate is configured; the standard health service and server reflection
(so ``grpcurl`` works); a Prometheus endpoint when ``metrics_port`` is set. ``serve_until_signalled``
runs one until SIGINT or SIGTERM, then drains it (docs/OPERATIONS.md, "Shutdown").
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from indexer.config import ServerConfig
from indexer.errors import InvalidArgument
from indexer.snapshots import atomic_write
from indexer.telemetry import MetricsEndpoint, start_metrics_endpoint
from searcher import auth
from searcher.decoding import DecodingInterceptor
from searcher.telemetry import RpcMetrics, TelemetryInterceptor

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def reachable_host(host: str) -> str:
    """The address a client on the same host dials for a server bound to ``host``."""
    return "127.0.0.1" if host in _WILDCARD_HOSTS else host


def grpc_server(config: ServerConfig, metrics: RpcMetrics) -> grpc.aio.Server:
    """A server with the interceptors, message limits and admission bound of ``config``."""
    # Telemetry first (outermost): it also counts and logs the calls authentication refuses.
    # Decoding last: a request that does not decode is INVALID_ARGUMENT, once authenticated.
    return grpc.aio.server(
        interceptors=[TelemetryInterceptor(metrics), *auth.interceptors(config), DecodingInterceptor()],
        options=message_limits(config.max_message_bytes),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )


def message_limits(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel or server options for messages up to ``max_message_bytes`` both ways."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


@dataclass
class Endpoint:
    """A started server, its health service and its metrics endpoint."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    host: str
    metrics_endpoint: MetricsEndpoint | None

    @property
    def target(self) -> str:
        """Where a client on the same host reaches the server."""
        return f"{reachable_host(self.host)}:{self.port}"

    @property
    def metrics_port(self) -> int | None:
        """Port of the Prometheus endpoint, None when it is off."""
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    async def drain(self, drain_delay_s: float, grace_s: float) -> None:
        """NOT_SERVING first (load balancers stop routing), then let calls in flight finish.

        For ``drain_delay_s`` new calls are still served while health says NOT_SERVING: a load
        balancer needs a probe interval or two to notice before the port stops answering.
        """
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(drain_delay_s)
        await self.server.stop(grace_s)
        self.close_metrics()

    def close_metrics(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
            self.metrics_endpoint = None


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


def _metrics_endpoint(config: ServerConfig, metrics: RpcMetrics) -> MetricsEndpoint | None:
    if config.metrics_port is None:
        return None
    host = config.metrics_host or config.host
    endpoint = start_metrics_endpoint(metrics.registry, host, config.metrics_port)
    log.info("metrics on http://%s:%d/metrics", host, endpoint.port)
    return endpoint


async def start_endpoint(
    server: grpc.aio.Server,
    config: ServerConfig,
    metrics: RpcMetrics,
    services: Sequence[str],
    *,
    port: int | None = None,
) -> Endpoint:
    """Add health and reflection for ``services`` to ``server`` (its servicers already added),
    bind ``config.host`` and ``port`` (default ``config.port``; 0 picks one), start, SERVING."""
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = _bind(server, config, config.port if port is None else port)
    metrics_endpoint = _metrics_endpoint(config, metrics)
    try:
        await server.start()
        for service in ("", *services):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        if metrics_endpoint is not None:
            metrics_endpoint.close()
        raise
    log.info(
        "serving %s on %s:%d (%s%s)",
        ", ".join(services),
        config.host,
        bound,
        "TLS" if config.tls else "plaintext",
        ", token required" if config.auth_token else "",
    )
    return Endpoint(server, bound, health_servicer, config.host, metrics_endpoint)


class OnEndpoint:
    """Where a started front-end (``RunningServer``, ``RunningRouter``) answers: what its
    ``endpoint`` says, so both tell it alike."""

    endpoint: Endpoint

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def target(self) -> str:
        """Where a client on the same host reaches the server."""
        return self.endpoint.target

    @property
    def metrics_port(self) -> int | None:
        """Port of the Prometheus endpoint, None when it is off."""
        return self.endpoint.metrics_port


class Stoppable(Protocol):
    port: int

    async def stop(self, grace_s: float = ...) -> None: ...


async def serve_until_signalled(
    start: Callable[[], Awaitable[Stoppable]], config: ServerConfig, *, port_file: Path | None = None
) -> None:
    """Start, serve until SIGINT or SIGTERM, then stop gracefully.

    ``port_file`` receives the bound port once the server answers (written atomically, so a
    reader never sees a partial number): how a supervisor learns the port of ``--port 0``.
    """
    running = await start()
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
            config.drain_delay_s,
            config.grace_s,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await running.stop(config.grace_s)
        if port_file is not None:
            port_file.unlink(missing_ok=True)
