"""Subcommands that serve or talk to a server: ``serve``, ``search`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import grpc
from tqdm import tqdm

from albatross.exit_codes import EXIT_INVALID, EXIT_OK, EXIT_REJECTED, exit_code_for_status
from albatross.options import add_store_options, app_config, open_workspace
from indexer.config import (
    AppConfig,
    RouterConfig,
    config_from_environment,
    read_token_file,
    router_from_environment,
)
from indexer.errors import (
    CollectionNotFound,
    InvalidArgument,
    InvalidFilter,
    MixedWhiteningVersions,
    ShardUnavailable,
)
from indexer.records import Condition, Fusion, FusionMethod, MetadataFilter, Range, SearchMode
from indexer.samples import SAMPLE_CORPUS
from searcher.fusion import FusionRequest
from searcher.results import Hit
from searcher.telemetry import ACCESS_LOGGER

Subparsers = Any
DEFAULT_TARGET = "127.0.0.1:50051"
BATCH_QUERIES = 64


@contextmanager
def reporting_rpc_errors(command: str, target: str) -> Iterator[list[int]]:
    """Turn a failed call into one line on stderr and an exit code (stored in the yielded list)."""
    outcome = [EXIT_OK]
    try:
        yield outcome
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        details = error.details() or ""  # type: ignore[attr-defined]
        hint = ""
        if code == grpc.StatusCode.UNAVAILABLE:
            if ShardUnavailable.SAYS in details:
                hint = " (--allow-partial answers from the other shards)"
            elif MixedWhiteningVersions.SAYS not in details:  # the router said all there is to say
                hint = f" (is `albatross serve` running at {target}?)"
        print(f"albatross {command}: {code.name}: {details}{hint}", file=sys.stderr)
        outcome[0] = exit_code_for_status(code.name)


# --- filters on the command line --------------------------------------------------------------


def parse_filter(raw: str | None) -> MetadataFilter | None:
    """``{"category": "animal", "year": {"gte": 2000}, "lang": {"in": ["en", "fr"]}}`` -> filter."""
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidFilter(f"--filter is not JSON ({exc.msg})", field="filter") from exc
    if not isinstance(spec, dict):
        raise InvalidFilter("--filter must be a JSON object of field conditions", field="filter")
    return MetadataFilter(tuple(_condition(field, value) for field, value in spec.items()))


def _condition(field: str, value: object) -> Condition:
    if not isinstance(value, dict):
        return Condition(field=field, equals=value)  # type: ignore[arg-type]
    if set(value) == {"in"}:
        values = value["in"]
        if not isinstance(values, list):
            raise InvalidFilter(f"filter on {field!r}: 'in' takes a list", field=f"filter.{field}")
        return Condition(field=field, one_of=tuple(values))
    unknown = set(value) - {"gt", "gte", "lt", "lte"}
    if unknown:
        raise InvalidFilter(
            f"filter on {field!r}: unknown operator(s) {sorted(unknown)}; use in, gt, gte, lt, lte",
            field=f"filter.{field}",
        )
    return Condition(field=field, range=Range(**value))


# --- serve ------------------------------------------------------------------------------------


def register_serve(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "serve", help="run the searcher: gRPC (health checking, reflection) and, with --http-port, HTTP/JSON"
    )
    parser.add_argument("--port", type=int, help="port to bind (default 50051; 0 picks a free one)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    web = parser.add_argument_group("HTTP/JSON API and search page (off unless --http-port is given)")
    web.add_argument(
        "--http-port", type=int, help="serve the HTTP API, /docs and the search page here (0: any)"
    )
    web.add_argument("--http-host", help="address of the HTTP API (default: --host)")
    web.add_argument(
        "--cors-origin",
        action="append",
        help="browser origin allowed to call the HTTP API, e.g. https://app.example, or * (repeatable)",
    )
    scale = parser.add_argument_group("beyond one machine")
    scale.add_argument("--shard", help="serve only shard I of N of every collection, as I/N (e.g. 0/3)")
    scale.add_argument("--router", action="store_true", help="route searches to --shards and merge them")
    scale.add_argument(
        "--shards",
        help="router: shards in order, separated by ',', replicas of one by '|': h1:p|h2:p,h3:p|h4:p",
    )
    scale.add_argument("--shard-token-file", type=Path, help="router: bearer token to send to the shards")
    scale.add_argument("--shard-tls-ca", type=Path, help="router: TLS to the shards, trusting this CA")
    scale.add_argument("--shard-tls-cert", type=Path, help="router: client certificate for shards with mTLS")
    scale.add_argument("--shard-tls-key", type=Path, help="router: private key of --shard-tls-cert")
    scale.add_argument(
        "--hedge-after-ms",
        type=float,
        help="router: ask a second replica after this long (default 50; <0 never)",
    )
    scale.add_argument("--health-interval", type=float, help="router: seconds between replica health probes")
    add_store_options(parser)
    add_operations_options(parser)
    parser.set_defaults(run=run_serve)


def add_operations_options(parser: argparse.ArgumentParser) -> None:
    """Security, admission bounds, telemetry and shutdown of ``serve`` (docs/OPERATIONS.md)."""
    ops = parser.add_argument_group("security and operations")
    ops.add_argument("--token-file", type=Path, help="require this bearer token (else $ALBATROSS_TOKEN)")
    ops.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM); turns TLS on")
    ops.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    ops.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA")
    ops.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here (0: any port)")
    ops.add_argument("--metrics-host", help="address of the metrics endpoint (default: --host)")
    ops.add_argument("--max-concurrent-rpcs", type=int, help="calls served at once (default 256)")
    ops.add_argument("--max-pending-queries", type=int, help="queries waiting to be embedded (default 1024)")
    ops.add_argument(
        "--filter-cache-ids", type=int, help="chunk ids of filter results kept in memory (default 4000000)"
    )
    ops.add_argument("--drain-delay", type=float, help="seconds NOT_SERVING before draining (default 0)")
    ops.add_argument("--grace", type=float, help="seconds calls in flight get on shutdown (default 10)")
    ops.add_argument("--port-file", type=Path, help="write the bound port here once serving")


_SERVER_FLAGS = {
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "tls_client_ca": "tls_client_ca",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
    "max_concurrent_rpcs": "max_concurrent_rpcs",
    "max_pending_queries": "max_pending_queries",
    "filter_cache_ids": "filter_cache_ids",
    "drain_delay": "drain_delay_s",
    "grace": "grace_s",
    "http_port": "http_port",
    "http_host": "http_host",
}


def with_operations_options(config: AppConfig, args: argparse.Namespace) -> AppConfig:
    """``config`` with the operations flags given on the command line (flags beat environment)."""
    changes: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in _SERVER_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    if getattr(args, "cors_origin", None):
        changes["cors_origins"] = tuple(args.cors_origin)
    if args.token_file is not None:
        changes["auth_token"] = read_token_file(args.token_file)
    return replace(config, server=replace(config.server, **changes))


def parse_shard(raw: str) -> tuple[int, int]:
    """``I/N`` -> ``(shard_index, shard_count)``."""
    index, _, count = raw.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise InvalidArgument(f"--shard {raw!r} must be I/N, e.g. 0/3", field="shard")
    return int(index), int(count)


def router_config(args: argparse.Namespace) -> RouterConfig:
    """The router's view of its shards: ``--shards`` and the ``--shard-*`` flags over the environment."""
    from searcher.shards import parse_shards

    if not args.shards:
        raise InvalidArgument("--router needs --shards host:port|host:port,...", field="shards")
    config = router_from_environment(parse_shards(args.shards))
    changes: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in _ROUTER_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.shard_token_file is not None:
        changes["token"] = read_token_file(args.shard_token_file)
    if args.hedge_after_ms is not None and args.hedge_after_ms < 0:
        changes["hedge_after_ms"] = None
    return replace(config, **changes)


_ROUTER_FLAGS = {
    "shard_tls_ca": "tls_ca",
    "shard_tls_cert": "tls_cert",
    "shard_tls_key": "tls_key",
    "hedge_after_ms": "hedge_after_ms",
    "health_interval": "health_interval_s",
}


def run_serve(args: argparse.Namespace) -> int:
    config = with_operations_options(app_config(args), args)
    if args.router:
        from searcher.router import serve_router
        from searcher.telemetry import configure_access_log

        if config.server.http_port is not None:
            raise InvalidArgument(
                "--http-port: a router serves gRPC only (HTTP over shards is not built yet)",
                field="http_port",
            )
        router = router_config(args)
        configure_access_log()
        asyncio.run(serve_router(config.server, router, port_file=args.port_file))
        return EXIT_OK
    if args.shards:
        raise InvalidArgument("--shards is for --router", field="shards")
    if args.shard:
        index, count = parse_shard(args.shard)
        config = replace(config, server=replace(config.server, shard_index=index, shard_count=count))
    from searcher.server import serve
    from searcher.telemetry import configure_access_log

    configure_access_log()
    asyncio.run(serve(config, port_file=args.port_file))
    return EXIT_OK


# --- search -----------------------------------------------------------------------------------


FILTER_HELP = (
    'metadata filter as JSON, every condition must hold: {"room": "hall"} equals, '
    '{"lang": {"in": ["en", "fr"]}} one of, {"year": {"gte": 2000, "lt": 2010}} a range '
    "(gt, gte, lt, lte); values are strings, numbers or booleans"
)


def register_search(sub: Subparsers) -> None:
    parser = sub.add_parser("search", help="search a collection over gRPC (one query, or a file of queries)")
    parser.add_argument("query", nargs="?", help="the query text (omit with --queries)")
    parser.add_argument("--collection", required=True, help="the collection to search")
    parser.add_argument("--k", type=int, default=10, help="documents to return (1..1000, default 10)")
    parser.add_argument("--filter", help=FILTER_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON (with --queries: one line per query)")
    parser.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"host:port of `albatross serve` (default {DEFAULT_TARGET})"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call, seconds (default 30)")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="through a router, in any mode: answer from the shards that answer, with a warning naming "
        "the missing ones, instead of failing UNAVAILABLE",
    )
    batch = parser.add_argument_group("a file of queries")
    batch.add_argument("--queries", type=Path, help="JSONL of queries (_id, text), searched in batches")
    batch.add_argument("--run-out", type=Path, help="write a TREC run file here (default: stdout)")
    batch.add_argument("--tag", default="albatross", help="run tag of the TREC file (default albatross)")
    ranking = parser.add_argument_group("ranking")
    ranking.add_argument(
        "--mode",
        choices=[mode.value for mode in SearchMode],
        default=SearchMode.DENSE.value,
        help="dense: meaning (the encoder); lexical: the words themselves (BM25: identifiers, names, "
        "codes); hybrid: both, fused (default dense)",
    )
    ranking.add_argument(
        "--fusion",
        choices=[method.value for method in FusionMethod],
        help="hybrid: adaptive, rrf or convex (default: the collection's, adaptive unless created otherwise)",
    )
    ranking.add_argument("--rrf-k", type=int, help="hybrid with rrf: the rank constant (default 60)")
    ranking.add_argument(
        "--dense-weight",
        type=float,
        help="hybrid with convex: the dense side's share, 0..1; with adaptive: its share for ordinary "
        "queries (exact-term lookups get 1 - it)",
    )
    add_store_options(parser, listed=False)  # accepted like every command's; the server owns the store
    security = parser.add_argument_group("security")
    security.add_argument("--token-file", type=Path, help="bearer token to send (else $ALBATROSS_TOKEN)")
    security.add_argument("--tls-ca", type=Path, help="CA of the server certificate (PEM); turns TLS on")
    security.add_argument("--tls-cert", type=Path, help="client certificate for mutual TLS (PEM)")
    security.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    parser.set_defaults(run=run_search)


def client_security(args: argparse.Namespace) -> dict[str, Any]:
    """The token and TLS keyword arguments of ``AlbatrossClient`` from the ``search`` flags."""
    if args.token_file is not None:
        token: str | None = read_token_file(args.token_file)
    else:
        token = config_from_environment().server.auth_token
    return {"token": token, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key}


def hit_to_json(hit: Hit) -> dict[str, object]:
    return {
        "id": hit.external_id,
        "score": round(hit.score, 6),
        "title": hit.title,
        "text": hit.text,
        "start": hit.start,
        "end": hit.end,
        "metadata": dict(hit.metadata),
        "legs": [{"leg": leg.leg, "score": round(leg.score, 6), "rank": leg.rank} for leg in hit.legs],
    }


def print_hits(
    hits: Sequence[Hit],
    out: TextIO = sys.stdout,
    width: int = 100,
    *,
    legs: bool = False,
    field: str | None = None,
) -> None:
    """One line per hit; with ``legs``, which legs of a hybrid search found it, at what rank;
    with ``field``, that metadata field's value (``label=food``)."""
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= width else snippet[: width - 1] + "…"
        title = f" {hit.title}:" if hit.title else ""
        found_by = " (" + ", ".join(f"{leg.leg} #{leg.rank}" for leg in hit.legs) + ")" if legs else ""
        shown = f" {field}={hit.metadata.get(field)}" if field else ""
        print(f"{rank:>3}. {hit.score:.4f}  [{hit.external_id}]{shown}{found_by}{title} {snippet}", file=out)


def trec_lines(query_id: str, hits: Sequence[Hit], tag: str) -> Iterator[str]:
    """``qid Q0 docid rank score tag``: the run format trec_eval and BEIR tools read."""
    for rank, hit in enumerate(hits, start=1):
        yield f"{query_id} Q0 {hit.external_id} {rank} {hit.score:.6f} {tag}"


def ranking_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``mode`` and ``fusion`` keyword arguments of the client's searches, from the flags
    (a fusion value out of range is refused here, naming the flag's field)."""
    fusion = FusionRequest(
        method=FusionMethod(args.fusion) if args.fusion else None,
        rrf_k=args.rrf_k,
        dense_weight=args.dense_weight,
    )
    fusion.resolve(Fusion())
    return {"mode": SearchMode(args.mode), "fusion": fusion}


def run_search(args: argparse.Namespace) -> int:
    from searcher.client import AlbatrossClient

    if args.query and args.queries is not None:
        raise InvalidArgument("give a query or --queries FILE, not both", field="queries")
    metadata_filter = parse_filter(args.filter)
    ranking = ranking_of(args)
    with (
        reporting_rpc_errors("search", args.target) as outcome,
        AlbatrossClient(args.target, timeout=args.timeout, **client_security(args)) as client,
    ):
        if args.queries is not None:
            outcome[0] = search_file(client, args, metadata_filter, ranking)
        elif args.query:
            asked = (args.collection, args.query, args.k, metadata_filter)
            missing: tuple[str, ...] = ()
            if args.allow_partial:
                answer = client.search_allowing_partial(*asked, **ranking)
                hits, warnings, missing = answer.hits, list(answer.warnings), answer.missing_shards
            else:
                hits, warnings = client.search_with_warnings(*asked, **ranking)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            if missing:
                print(f"albatross search: warning: {partial_warning(missing)}", file=sys.stderr)
            if args.json:
                print(json.dumps([hit_to_json(hit) for hit in hits], indent=2, ensure_ascii=False))
            else:
                print_hits(hits, legs=ranking["mode"] is SearchMode.HYBRID)
        else:
            print("albatross search: give a query, or --queries FILE", file=sys.stderr)
            return EXIT_INVALID
    return outcome[0]


def partial_warning(missing: Sequence[str], *, queries: int | None = None, of: int | None = None) -> str:
    """The one line saying an answer lacks shards: their documents can be missing from it."""
    answered = "answer" if queries is None else f"{queries} of {of} queries answered"
    return f"partial {answered} without {', '.join(missing)}: documents held there are missing"


def _search_batch(
    client: Any,
    args: argparse.Namespace,
    texts: list[str],
    metadata_filter: MetadataFilter | None,
    ranking: dict[str, Any],
) -> tuple[list[list[Hit]], tuple[str, ...]]:
    """One batch's ranked lists and the shards it was answered without (with ``--allow-partial``)."""
    if not args.allow_partial:
        return client.search_batch(args.collection, texts, args.k, metadata_filter, **ranking), ()
    answer = client.search_batch_allowing_partial(args.collection, texts, args.k, metadata_filter, **ranking)
    return answer.results, answer.missing_shards


def search_file(
    client: Any, args: argparse.Namespace, metadata_filter: MetadataFilter | None, ranking: dict[str, Any]
) -> int:
    """Search every good line of ``--queries``; each bad one is named on stderr (exit 1, as ingest).
    Queries a router answered without some shards are counted and named in one warning at the end."""
    from albatross.evaluation.beir import read_query_file

    found = read_query_file(args.queries)
    for rejection in found.rejected:
        print(f"albatross search: {rejection}", file=sys.stderr)
    queries = found.queries
    out = args.run_out.open("w", encoding="utf-8") if args.run_out else sys.stdout
    # Shards can drop out and come back between batches: every shard any batch lacked is named.
    missing: dict[str, None] = {}
    partial_queries = 0
    try:
        with tqdm(total=len(queries), unit="queries", file=sys.stderr) as bar:
            for start in range(0, len(queries), BATCH_QUERIES):
                batch = queries[start : start + BATCH_QUERIES]
                results, lacking = _search_batch(
                    client, args, [q.text for q in batch], metadata_filter, ranking
                )
                missing.update(dict.fromkeys(lacking))
                partial_queries += len(batch) if lacking else 0
                for query, hits in zip(batch, results, strict=True):
                    if args.json and out is sys.stdout:
                        record: dict[str, object] = {
                            "_id": query.query_id,
                            "query": query.text,
                            "hits": [hit_to_json(h) for h in hits],
                        }
                        if lacking:
                            record["missing_shards"] = list(lacking)
                        print(json.dumps(record, ensure_ascii=False), file=out)
                        continue
                    for line in trec_lines(query.query_id, hits, args.tag):
                        print(line, file=out)
                bar.update(len(batch))
    finally:
        if out is not sys.stdout:
            out.close()
            print(f"wrote {args.run_out}", file=sys.stderr)
        if missing:
            warning = partial_warning(list(missing), queries=partial_queries, of=len(queries))
            print(f"albatross search: warning: {warning}", file=sys.stderr)
    return EXIT_REJECTED if found.rejected else EXIT_OK


# --- demo -------------------------------------------------------------------------------------

DEMO_COLLECTION = "demo"
DEMO_QUERIES = (
    "a drink made from fermented grapes",
    "a vehicle with two wheels that you pedal",
    "the organ that lets you breathe",
    "a loyal animal kept as a pet that barks",
    "a metal that rusts",
    "a sweet red fruit",
)
# A rare name: the words themselves answer it (lexical), the encoder has barely seen it (dense).
KEYWORD_QUERY = "Thamnophis"
# Apples, cherries and tomatoes are plants and foods in WordNet: the topic filter picks one side.
TOPIC_QUERY = "a sweet red fruit"
TOPIC_FILTER = {"label": "food"}
# Where the demo assembles the topic classifier: beside the store it labels.
TOPIC_FOLDER = Path("models") / "wordnet-topic"


def register_demo(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "demo",
        help="ingest the sample corpus with the topic classifier, serve it, and search it (the main job)",
    )
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument(
        "--sample",
        type=Path,
        default=SAMPLE_CORPUS,
        help="JSONL to ingest (default: the shipped WordNet sample)",
    )
    add_store_options(parser)
    parser.set_defaults(run=run_demo)


def topic_classifier(config: AppConfig) -> Path:
    """The demo's topic classifier, assembled once under the data dir (deterministic, so a rebuilt
    folder has the revision the collection recorded)."""
    from indexer.topic_model import build_topic_classifier

    folder = (config.store.data_dir / TOPIC_FOLDER).resolve()
    if not (folder / "model.safetensors").is_file():
        print(f"assembling the WordNet topic classifier in {folder}", file=sys.stderr)
        build_topic_classifier(folder)
    return folder


def ingest_sample(config: AppConfig, sample: Path) -> bool:
    """Ingest ``sample`` into the demo collection; True when its documents carry topic labels."""
    if not sample.is_file():
        raise InvalidArgument(f"--sample {sample} is not a file", field="sample")
    classifier = str(topic_classifier(config))
    workspace = open_workspace(config)
    try:
        try:
            info = workspace.catalog.get(DEMO_COLLECTION)
        except CollectionNotFound:
            from indexer.records import CollectionSpec

            info = workspace.catalog.create(
                DEMO_COLLECTION, CollectionSpec(model="default", classifier=classifier)
            )
        if not info.spec.classifier:
            print(
                f"collection {DEMO_COLLECTION!r} was made by an earlier demo without the topic classifier: "
                "the topic search is skipped (run the demo on an empty --data-dir to see it)",
                file=sys.stderr,
            )
        from indexer.readers import count_records, read_path

        path = str(sample)
        with tqdm(
            total=count_records(path), unit="docs", desc="ingest sample corpus", file=sys.stderr
        ) as bar:
            summary = workspace.ingestor.ingest(DEMO_COLLECTION, read_path(path), on_progress=bar.update)
        print(
            f"collection {DEMO_COLLECTION!r}: {summary.outcomes()} ({summary.docs_per_second:.0f} docs/s)",
            file=sys.stderr,
        )
        return bool(info.spec.classifier)
    finally:
        workspace.close()


def ask_demo_queries(target: str, k: int, *, topics: bool) -> None:
    from searcher.client import AlbatrossClient

    with AlbatrossClient(target) as client:
        for query in DEMO_QUERIES:
            print(f"\n> {query}")
            print_hits(client.search(DEMO_COLLECTION, query, k))
        for mode in SearchMode:
            print(f"\n> {KEYWORD_QUERY}   (--mode {mode.value})")
            hits = client.search(DEMO_COLLECTION, KEYWORD_QUERY, k, mode=mode)
            print_hits(hits, legs=mode is SearchMode.HYBRID)
        if topics:
            (field,) = TOPIC_FILTER
            print(f"\n> {TOPIC_QUERY}   (no filter: the topic classifier's {field} of each hit)")
            print_hits(client.search(DEMO_COLLECTION, TOPIC_QUERY, k), field=field)
            print(f"\n> {TOPIC_QUERY}   (--filter '{json.dumps(TOPIC_FILTER)}')")
            hits = client.search(DEMO_COLLECTION, TOPIC_QUERY, k, parse_filter(json.dumps(TOPIC_FILTER)))
            print_hits(hits, field=field)


async def serve_and_ask(config: AppConfig, k: int, *, topics: bool) -> None:
    from searcher.server import create_server

    server = await create_server(config, port=0)
    try:
        print(f"searcher listening on {server.target}", file=sys.stderr)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: ask_demo_queries(server.target, k, topics=topics)
        )
    finally:
        await server.stop()


def run_demo(args: argparse.Namespace) -> int:
    config = app_config(args)
    # The demo prints its answers; one JSON access line per call would bury them.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    topics = ingest_sample(config, args.sample)
    asyncio.run(serve_and_ask(config, args.k, topics=topics))
    return EXIT_OK


REGISTRY: list[Callable[[Subparsers], None]] = [register_serve, register_search, register_demo]
