"""Configuration, parsed once into frozen objects and passed down through constructors.

Precedence: CLI flags > environment (``ALBATROSS_*``) > defaults. This is the only module that
reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexer.errors import InvalidArgument

DEFAULT_DATA_DIR = Path("./albatross-data")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "albatross-albert-small"
# Token budgets of one forward pass when EncoderConfig.batch_tokens is not set (its docstring).
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384


@dataclass(frozen=True)
class DeviceConfig:
    """Where the encoder runs. ``device='auto'`` picks CUDA when present, else CPU.

    ``dtype='auto'`` means bf16 (or fp16 where bf16 is unsupported) on CUDA and fp32 on CPU
    (bf16 measured about 5x slower than fp32 on CPUs without native bf16) -- or, with
    ``int8_on_cpu``, int8 Linear layers on CPU when the model keeps its vectors under them: int8
    weights, activations quantised to int8 per batch, checked at load time to keep the vectors of
    probe texts within cosine 0.99 of fp32 (else fp32 stays). ``dtype='int8'`` asks for it
    outright (CPU only).

    int8 is about 1.4x faster on CPU but a text's vector then moves slightly with its batch-mates
    (cosine >= 0.993 for the shipped model), so bulk ingestion turns ``int8_on_cpu`` on (a
    document is embedded once, in large batches) and searchers leave it off (a query's vector
    never depends on the queries it was batched with).

    ``cpu_streams`` > 1 runs that many forward passes at once on CPU, each with ``threads`` (or
    every core) divided by ``cpu_streams`` torch threads: int8 matrices this small do not keep two
    threads busy in one pass (on 2 cores, two one-thread streams measured 1.48x eager fp32, one
    two-thread pass 1.26x: bench/RESULTS.md). torch's thread count is process-wide, so only bulk
    ingestion, which owns its process, turns it on.
    """

    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    int8_on_cpu: bool = False
    cpu_streams: int = 1


@dataclass(frozen=True)
class EncoderConfig:
    """Batching of the forward pass: batches are length-sorted and bounded by a token budget.

    ``batch_tokens`` None takes the device's budget (``token_budget``): a GPU needs large batches
    to fill, while on a CPU a batch of a few thousand tokens keeps the feed-forward activations
    (6 KB a token for the default model) in cache: 2048 tokens measured 1.18x the int8 docs/s of
    the GPU budget, and the same in fp32 (1.02x), ``python -m bench.batch_budget``.

    ``hf_cache_dir`` is the Hugging Face hub cache (the folder holding ``models--org--name``)
    searched for model ids that are not folders; None means folders only.
    """

    batch_tokens: int | None = None
    max_batch: int = 128
    device: DeviceConfig = field(default_factory=DeviceConfig)
    hf_cache_dir: Path | None = None

    def token_budget(self, device_type: str) -> int:
        """Padded tokens one forward pass may hold on a device of ``device_type`` (cpu, cuda)."""
        if self.batch_tokens is not None:
            return self.batch_tokens
        return GPU_BATCH_TOKENS if device_type == "cuda" else CPU_BATCH_TOKENS


@dataclass(frozen=True)
class StoreConfig:
    """Where data lives. ``db_url`` None means SQLite in ``data_dir``."""

    data_dir: Path = DEFAULT_DATA_DIR
    db_url: str | None = None
    busy_timeout_s: float = 30.0

    @property
    def url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'albatross.sqlite3').resolve()}"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"


@dataclass(frozen=True)
class WhiteningPolicy:
    """When a whitening collection's map is fitted (``indexer.whitening.refit_due``): first at
    ``min_sample`` stored vectors, again each time the collection grows ``growth`` times past the
    sample, on at most ``max_sample`` vectors spread over the collection."""

    min_sample: int = 1_000
    growth: float = 4.0
    max_sample: int = 100_000

    def __post_init__(self) -> None:
        if not 2 <= self.min_sample <= self.max_sample:
            raise InvalidArgument("whitening needs 2 <= min_sample <= max_sample", field="min_sample")
        if self.growth <= 1:
            raise InvalidArgument("the whitening refit growth must be above 1", field="growth")


@dataclass(frozen=True)
class IngestConfig:
    docs_per_transaction: int = 512
    progress: bool = True
    whitening: WhiteningPolicy = field(default_factory=WhiteningPolicy)


@dataclass(frozen=True)
class LogRetention:
    """How long the change log keeps entries (docs/OPERATIONS.md, "Change-log compaction").

    Each searcher records in SQL the oldest sequence it may still replay (its newest snapshot's,
    or what it has applied without a snapshot) at open, after every snapshot and every
    ``heartbeat_s``; after a snapshot it prunes the entries every live reader has passed. A reader
    silent for ``reader_ttl_s`` stops holding the log back, and ``max_entries`` (None: no bound)
    caps the log whatever the readers need; a reader left behind the pruned point rebuilds from
    SQL, as one without a snapshot does.
    """

    reader_ttl_s: float = 24 * 3600.0
    max_entries: int | None = 10_000_000
    heartbeat_s: float = 60.0

    def __post_init__(self) -> None:
        if self.reader_ttl_s <= 0 or self.heartbeat_s <= 0:
            raise InvalidArgument("log reader TTL and heartbeat must be positive", field="log_reader_ttl_s")
        if self.heartbeat_s >= self.reader_ttl_s:
            raise InvalidArgument(
                "the heartbeat must be shorter than the reader TTL, or live readers expire", field="heartbeat_s"
            )
        if self.max_entries is not None and self.max_entries < 0:
            raise InvalidArgument("log max_entries must not be negative", field="log_max_entries")


@dataclass(frozen=True)
class ServerConfig:
    """The searcher's socket, admission bounds, security and telemetry.

    ``auth_token`` None means no token is asked for; TLS is on when ``tls_cert`` and ``tls_key``
    are given, and mutual when ``tls_client_ca`` is too. ``max_concurrent_rpcs`` and
    ``max_pending_queries`` bound memory under load: past them calls end RESOURCE_EXHAUSTED.
    ``metrics_port`` None serves no Prometheus endpoint (0 picks a free port); ``metrics_host``
    None binds it beside the gRPC ``host``. On SIGTERM health reports NOT_SERVING for
    ``drain_delay_s`` while calls are still accepted (load balancers notice), then calls in flight
    get ``grace_s`` to finish.

    ``http_port`` None serves no HTTP/JSON API (0 picks a free port): off by default, since a
    second listener is a second surface to secure and firewall, and replicas or shards sharing a
    host would all fight for one default port. ``http_host`` None binds it beside ``host``. The
    HTTP API shares the token, TLS files, message limit and ``max_concurrent_rpcs`` bound.
    ``cors_origins`` are the browser origins (``https://app.example``, or ``*``) allowed to call
    the HTTP API from other sites; empty allows only pages it serves itself.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    batch_max_size: int = 32
    batch_max_wait_ms: float = 2.0
    max_pending_queries: int = 1024
    max_concurrent_rpcs: int = 256
    # Chunk ids of filter results a searcher keeps (``searcher.filtered``): 32 MB by default.
    filter_cache_ids: int = 4_000_000
    poll_interval_s: float = 0.5
    snapshot_every_changes: int = 50_000
    # This searcher holds shard ``shard_index`` of ``shard_count`` of every collection
    # (``indexer.sharding``); a router (``albatross serve --router``) merges the shards' answers.
    shard_count: int = 1
    shard_index: int = 0
    max_message_bytes: int = 64 * 1024 * 1024
    # repr=False: a config printed in a log must not print the secret.
    auth_token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    metrics_port: int | None = None
    metrics_host: str | None = None
    drain_delay_s: float = 0.0
    grace_s: float = 10.0
    log_retention: LogRetention = field(default_factory=LogRetention)
    http_port: int | None = None
    http_host: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.auth_token is not None and not self.auth_token.strip():
            raise InvalidArgument("the auth token is empty", field="auth_token")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("TLS needs both a certificate and its private key", field="tls_cert")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgument("mutual TLS needs a server certificate", field="tls_client_ca")
        if self.filter_cache_ids < 0:
            raise InvalidArgument("filter_cache_ids must not be negative", field="filter_cache_ids")
        if self.max_concurrent_rpcs < 1:
            raise InvalidArgument("max_concurrent_rpcs must be at least 1", field="max_concurrent_rpcs")
        # grpc binds port % 65536 without a word: --port 99999 would serve on 34463.
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(
                f"port {self.port} is out of range (0-65535; 0 picks a free one)", field="port"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise InvalidArgument(f"metrics port {self.metrics_port} is out of range", field="metrics_port")
        if self.drain_delay_s < 0 or self.grace_s < 0:
            raise InvalidArgument("drain delay and grace must not be negative", field="drain_delay_s")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise InvalidArgument(f"HTTP port {self.http_port} is out of range", field="http_port")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise InvalidArgument(
                    f"CORS origin {origin!r} must be * or start with http:// or https://",
                    field="cors_origins",
                )

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class RouterConfig:
    """How the router reaches its shards (its own socket and security are a ``ServerConfig``).

    ``shards[i]`` lists the replicas of shard ``i`` (``host:port``), every one holding the same
    part of every collection. ``token`` is sent to the shards (None: the caller's own
    ``authorization`` header is passed on); ``tls_ca`` turns TLS to the shards on, and
    ``tls_cert`` + ``tls_key`` present the router's client certificate (shards with mutual TLS).
    A replica that has not answered after ``hedge_after_ms`` gets its request sent to the next one
    too (None: never hedge); health is probed every ``health_interval_s``.
    """

    shards: tuple[tuple[str, ...], ...]
    token: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hedge_after_ms: float | None = 50.0
    health_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.shards or not all(self.shards):
            raise InvalidArgument("the router needs at least one replica of every shard", field="shards")
        if self.token is not None and not self.token.strip():
            raise InvalidArgument("the shard token is empty", field="shard_token")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("a client certificate needs its private key", field="shard_tls_cert")
        if self.hedge_after_ms is not None and self.hedge_after_ms < 0:
            raise InvalidArgument("the hedge delay must not be negative", field="hedge_after_ms")
        if self.health_interval_s <= 0:
            raise InvalidArgument("the health interval must be positive", field="health_interval_s")

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None


def router_from_environment(shards: tuple[tuple[str, ...], ...], environ: Mapping[str, str] | None = None) -> RouterConfig:
    """A ``RouterConfig`` for ``shards`` with ``ALBATROSS_SHARD_*`` environment variables applied."""
    env = os.environ if environ is None else environ
    return RouterConfig(
        shards=shards,
        token=env.get("ALBATROSS_SHARD_TOKEN") or None,
        tls_ca=_env_path(env, "ALBATROSS_SHARD_TLS_CA"),
        tls_cert=_env_path(env, "ALBATROSS_SHARD_TLS_CERT"),
        tls_key=_env_path(env, "ALBATROSS_SHARD_TLS_KEY"),
    )


@dataclass(frozen=True)
class AppConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    default_model: Path = DEFAULT_MODEL_DIR


BULK_CPU_STREAMS = 2


def for_bulk_ingestion(config: AppConfig) -> AppConfig:
    """``config`` for embedding many documents once: int8 on CPU where the model allows it
    (``DeviceConfig.int8_on_cpu``; an explicit dtype is kept as it is) and two concurrent forward
    passes on CPU (``DeviceConfig.cpu_streams``)."""
    device = replace(config.encoder.device, int8_on_cpu=True, cpu_streams=BULK_CPU_STREAMS)
    return replace(config, encoder=replace(config.encoder, device=device))


def _env_int(environ: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"environment variable {name}={raw!r} is not an integer", field=name) from exc


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    raw = environ.get(name)
    return Path(raw).expanduser() if raw else None


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace, e.g. a final newline, dropped)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidArgument(f"cannot read token file {path}: {exc.strerror}", field="token_file") from exc
    if not token:
        raise InvalidArgument(f"token file {path} is empty", field="token_file")
    return token


def _env_list(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = environ.get(name)
    if not raw:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _server_from_environment(env: Mapping[str, str], base: ServerConfig) -> ServerConfig:
    metrics_port = env.get("ALBATROSS_METRICS_PORT")
    http_port = env.get("ALBATROSS_HTTP_PORT")
    return replace(
        base,
        port=_env_int(env, "ALBATROSS_PORT", base.port),
        auth_token=env.get("ALBATROSS_TOKEN") or base.auth_token,
        tls_cert=_env_path(env, "ALBATROSS_TLS_CERT") or base.tls_cert,
        tls_key=_env_path(env, "ALBATROSS_TLS_KEY") or base.tls_key,
        tls_client_ca=_env_path(env, "ALBATROSS_TLS_CLIENT_CA") or base.tls_client_ca,
        metrics_port=_env_int(env, "ALBATROSS_METRICS_PORT", 0) if metrics_port else base.metrics_port,
        max_concurrent_rpcs=_env_int(env, "ALBATROSS_MAX_CONCURRENT_RPCS", base.max_concurrent_rpcs),
        http_port=_env_int(env, "ALBATROSS_HTTP_PORT", 0) if http_port else base.http_port,
        cors_origins=_env_list(env, "ALBATROSS_CORS_ORIGINS", base.cors_origins),
    )


def _hf_hub_cache(environ: Mapping[str, str]) -> Path:
    """The hub cache folder the way ``huggingface_hub`` finds it (read here, never downloaded to)."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def config_from_environment(environ: Mapping[str, str] | None = None) -> AppConfig:
    """Defaults overlaid with ``ALBATROSS_*`` environment variables."""
    env = os.environ if environ is None else environ
    base = AppConfig()
    store = replace(
        base.store,
        data_dir=Path(env.get("ALBATROSS_DATA_DIR", str(base.store.data_dir))),
        db_url=env.get("ALBATROSS_DB") or base.store.db_url,
    )
    device = replace(
        base.encoder.device,
        device=env.get("ALBATROSS_DEVICE", base.encoder.device.device),
        dtype=env.get("ALBATROSS_DTYPE", base.encoder.device.dtype),
    )
    encoder = replace(
        base.encoder,
        batch_tokens=_env_int(env, "ALBATROSS_BATCH_TOKENS", base.encoder.batch_tokens),
        device=device,
        hf_cache_dir=_hf_hub_cache(env),
    )
    server = _server_from_environment(env, base.server)
    server = replace(
        server,
        shard_count=_env_int(env, "ALBATROSS_SHARD_COUNT", base.server.shard_count),
        shard_index=_env_int(env, "ALBATROSS_SHARD_INDEX", base.server.shard_index),
    )
    model = Path(env.get("ALBATROSS_MODEL", str(base.default_model)))
    return replace(base, store=store, encoder=encoder, server=server, default_model=model)
