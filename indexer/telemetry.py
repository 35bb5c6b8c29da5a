"""Prometheus counters of ingestion, and the HTTP endpoint that exposes a registry.

Metrics live in a ``CollectorRegistry`` passed down, never in prometheus_client's global one: two
servers in one process (tests) or a worker and a server each expose only their own numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server

from indexer.errors import InvalidArgument
from indexer.records import DocumentStatus


class IngestMetrics:
    """Documents read and their outcomes, per collection: ``rate()`` of them is documents/s."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.documents = Counter(
            "albatross_ingest_documents",
            "Documents ingested, by collection and outcome (a DocumentStatus: written, unchanged, "
            "metadata_updated, rejected)",
            ["collection", "outcome"],
            registry=registry,
        )
        self.read = Counter(
            "albatross_ingest_documents_read",
            "Input records consumed by ingestion (valid or not), by collection",
            ["collection"],
            registry=registry,
        )

    def count_read(self, collection: str, count: int) -> None:
        self.read.labels(collection).inc(count)

    def count_outcomes(self, collection: str, statuses: Iterable[str]) -> None:
        """One increment per document status (a ``DocumentStatus`` value)."""
        for status in statuses:
            self.documents.labels(collection, status).inc()

    def count_batch(self, collection: str, statuses: Sequence[str]) -> None:
        """A batch whose documents were read and given these statuses."""
        self.count_read(collection, len(statuses))
        self.count_outcomes(collection, statuses)

    def count_totals(self, collection: str, counts: Mapping[DocumentStatus, int]) -> None:
        """Documents per status, e.g. an ``IngestSummary.counts()``."""
        for status, count in counts.items():
            self.documents.labels(collection, status.value).inc(count)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP server (a daemon thread); ``port`` is the bound one."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_endpoint(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve ``registry`` in the Prometheus text format on ``http://host:port/metrics`` (0: any port)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot serve metrics on {host}:{port}: {exc.strerror}", field="metrics_port"
        ) from exc
    return MetricsEndpoint(server, thread)
