"""Every command against each kind of unusable store, data directory, model folder, input and
target, run as an operator runs it (a real process): the exit code the README gives, one line
naming what was wrong, and never a Python traceback. docs/OPERATIONS.md ("What each failure
says") is this table.

The cases run a few at a time in one module fixture (each process pays the torch import), and
each test then reads its own case's outcome.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.config import AppConfig, ServerConfig, StoreConfig
from indexer.records import CollectionSpec, Document
from indexer.store import Store
from indexer.workspace import Workspace
from searcher.server import RunningServer, create_server
from tests.cli.running import run_albatross
from tests.searcher.serving import ServerThread, running_server
from tests.searcher.test_auth_tls import TOKEN, Authority

pytestmark = pytest.mark.slow

# Nobody listens on port 1 of the loopback interface: connection refused at once.
NOBODY_PG = "postgresql+psycopg://albatross:secret@127.0.0.1:1/albatross"
AT_ONCE = 4


@dataclass(frozen=True)
class Places:
    data: Path  # a data directory holding collection "notes" (mean pooling, window 256)
    tmp: Path
    corpus: Path
    readonly_db: str  # an SQLite URL opened read-only, of a database that exists
    guarded: Guarded
    not_pem: Path  # a text file that is no certificate or key


@dataclass(frozen=True)
class Guarded:
    """A real server that wants a bearer token, over TLS, and certificates of its CA."""

    target: str
    ca: Path
    cert: Path  # a client certificate
    key: Path  # the key of another certificate (the server's)


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Places], list[str]]
    exit_code: int
    says: Callable[[Places], str]


def _data(places: Places) -> list[str]:
    return ["--data-dir", str(places.data)]


def _search(places: Places, *flags: str, target: str = "127.0.0.1:1") -> list[str]:
    return ["search", "x", "--collection", "notes", "--target", target, "--timeout", "10", *flags]


def _serve(places: Places, *flags: str) -> list[str]:
    return ["serve", "--port", "0", *flags, *_data(places)]


def _router(places: Places, *flags: str) -> list[str]:
    return _serve(places, "--router", "--shards", "127.0.0.1:1", *flags)


CASES = (
    # --- the store: --db ------------------------------------------------------------------
    Case(
        "list, --db not a URL",
        lambda p: ["collections", "list", "--db", "notaurl"],
        2,
        lambda p: "database URL 'notaurl' is not a URL",
    ),
    Case(
        "list, PostgreSQL nobody listens on",
        lambda p: ["collections", "list", "--db", NOBODY_PG],
        5,
        lambda p: "cannot reach the database postgresql+psycopg://albatross:***@127.0.0.1:1/albatross",
    ),
    Case(
        "list, mysql:// without its driver",
        lambda p: ["collections", "list", "--db", "mysql://u@localhost/x"],
        2,
        lambda p: "database URL mysql://u@localhost/x: its driver 'MySQLdb' is not installed",
    ),
    Case(
        "list, unknown dialect",
        lambda p: ["collections", "list", "--db", "nosuch://x"],
        2,
        lambda p: "SQLAlchemy has no dialect 'nosuch'",
    ),
    Case(
        "list, SQLite file in a missing folder",
        lambda p: ["collections", "list", "--db", f"sqlite:///{p.tmp}/missing/folder/a.db"],
        2,
        lambda p: (
            f"SQLite database {p.tmp}/missing/folder/a.db: folder {p.tmp}/missing/folder does not exist"
        ),
    ),
    Case(
        "create, PostgreSQL nobody listens on",
        lambda p: ["collections", "create", "c", "--db", NOBODY_PG],
        5,
        lambda p: "cannot reach the database postgresql+psycopg://albatross:***@127.0.0.1:1",
    ),
    Case(
        "drop, --db not a URL",
        lambda p: ["collections", "drop", "c", "--db", "notaurl"],
        2,
        lambda p: "database URL 'notaurl' is not a URL",
    ),
    Case(
        "ingest, PostgreSQL nobody listens on",
        lambda p: ["ingest", str(p.corpus), "--collection", "c", "--no-progress", "--db", NOBODY_PG],
        5,
        lambda p: "cannot reach the database postgresql+psycopg://albatross:***@127.0.0.1:1",
    ),
    Case(
        "ingest, read-only database",
        lambda p: ["ingest", str(p.corpus), "--collection", "notes", "--no-progress", "--db", p.readonly_db],
        5,
        lambda p: "is read-only",
    ),
    Case(
        "stats, mysql:// without its driver",
        lambda p: ["stats", "--collection", "c", "--db", "mysql://u@localhost/x"],
        2,
        lambda p: "its driver 'MySQLdb' is not installed",
    ),
    Case(
        "delete, SQLite file in a missing folder",
        lambda p: ["delete", "x", "--collection", "c", "--db", f"sqlite:///{p.tmp}/missing/a.db"],
        2,
        lambda p: f"folder {p.tmp}/missing does not exist",
    ),
    Case(
        "serve, PostgreSQL nobody listens on",
        lambda p: ["serve", "--port", "0", "--db", NOBODY_PG],
        5,
        lambda p: "cannot reach the database postgresql+psycopg://albatross:***@127.0.0.1:1",
    ),
    # --- the data directory -------------------------------------------------------------------
    Case(
        "list, data directory is a file",
        lambda p: ["collections", "list", "--data-dir", str(p.corpus)],
        2,
        lambda p: f"data directory {p.corpus}: a file is in the way, not a folder",
    ),
    Case(
        "ingest, data directory cannot be created",
        lambda p: ["ingest", str(p.corpus), "--collection", "c", "--data-dir", "/sys/albatross/data"],
        5,
        lambda p: "cannot create the data directory /sys/albatross/data",
    ),
    # --- collections, spec flags and the model folder -----------------------------------------
    Case(
        "create, collection exists",
        lambda p: ["collections", "create", "notes", *_data(p)],
        2,
        lambda p: "collection 'notes' already exists",
    ),
    Case(
        "ingest, spec flags that differ from the collection's",
        lambda p: [
            "ingest",
            str(p.corpus),
            "--collection",
            "notes",
            "--pooling",
            "max",
            "--window",
            "64",
            *_data(p),
        ],
        4,
        lambda p: "--pooling: the collection has mean, given max; --window: the collection has 256, given 64",
    ),
    Case(
        "stats, no such collection",
        lambda p: ["stats", "--collection", "nope", *_data(p)],
        3,
        lambda p: "collection 'nope' does not exist",
    ),
    Case(
        "create, model folder missing",
        lambda p: ["collections", "create", "m", "--model", f"{p.tmp}/no-model", *_data(p)],
        4,
        lambda p: f"model folder '{p.tmp}/no-model' does not exist",
    ),
    Case(
        "create, folder that is no model",
        lambda p: ["collections", "create", "m", "--model", str(p.tmp), *_data(p)],
        4,
        lambda p: "has no config.json, so it is not a saved model folder",
    ),
    # --- inputs and targets -------------------------------------------------------------------
    Case(
        "ingest, input file missing",
        lambda p: ["ingest", f"{p.tmp}/none.jsonl", "--collection", "notes", "--no-progress", *_data(p)],
        2,
        lambda p: f"input file '{p.tmp}/none.jsonl' does not exist",
    ),
    Case(
        "search, no server at the target",
        lambda p: ["search", "x", "--collection", "c", "--target", "127.0.0.1:1", "--timeout", "2"],
        5,
        lambda p: "(is `albatross serve` running at 127.0.0.1:1?)",
    ),
    Case(
        "search, malformed target",
        lambda p: ["search", "x", "--collection", "c", "--target", "notahost:::", "--timeout", "2"],
        5,
        lambda p: "errors resolving notahost:::",
    ),
    Case(
        "search, queries file missing",
        lambda p: [
            "search",
            "--queries",
            f"{p.tmp}/none.jsonl",
            "--collection",
            "c",
            "--target",
            "127.0.0.1:1",
        ],
        2,
        lambda p: f"queries file {p.tmp}/none.jsonl does not exist",
    ),
    # --- token and TLS files, and a server that wants a token -------------------------------
    Case(
        "search, --tls-ca file missing",
        lambda p: _search(p, "--tls-ca", f"{p.tmp}/none.pem"),
        2,
        lambda p: f"cannot read tls_ca {p.tmp}/none.pem: No such file or directory",
    ),
    Case(
        "search, --tls-ca not PEM",
        lambda p: _search(p, "--tls-ca", str(p.not_pem)),
        2,
        lambda p: f"tls_ca {p.not_pem} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' block)",
    ),
    Case(
        "search, --tls-key of another certificate",
        lambda p: _search(p, "--tls-cert", str(p.guarded.cert), "--tls-key", str(p.guarded.key)),
        2,
        lambda p: f"tls_key {p.guarded.key} is not the private key of tls_cert {p.guarded.cert}",
    ),
    Case(
        "search, --token-file missing",
        lambda p: _search(p, "--token-file", f"{p.tmp}/none.token"),
        2,
        lambda p: f"cannot read token file {p.tmp}/none.token: No such file or directory",
    ),
    Case(
        "search, wrong token",
        lambda p: _search(
            p, "--tls-ca", str(p.guarded.ca), "--token-file", str(p.not_pem), target=p.guarded.target
        ),
        2,
        lambda p: "UNAUTHENTICATED: missing or invalid bearer token",
    ),
    Case(
        "serve, --tls-cert not PEM",
        lambda p: _serve(p, "--tls-cert", str(p.not_pem), "--tls-key", str(p.not_pem)),
        2,
        lambda p: f"tls_cert {p.not_pem} holds no PEM certificate",
    ),
    Case(
        "serve, --tls-cert file missing",
        lambda p: _serve(p, "--tls-cert", f"{p.tmp}/none.pem", "--tls-key", str(p.guarded.key)),
        2,
        lambda p: f"cannot read tls_cert {p.tmp}/none.pem: No such file or directory",
    ),
    Case(
        "serve --router, --shard-tls-ca file missing",
        lambda p: _router(p, "--shard-tls-ca", f"{p.tmp}/none.pem"),
        2,
        lambda p: f"cannot read shard_tls_ca {p.tmp}/none.pem: No such file or directory",
    ),
    Case(
        "serve --router, --shard-tls-cert file missing",
        lambda p: _router(p, "--shard-tls-cert", f"{p.tmp}/none.pem", "--shard-tls-key", str(p.guarded.key)),
        2,
        lambda p: f"cannot read shard_tls_cert {p.tmp}/none.pem: No such file or directory",
    ),
    Case(
        "serve --router, --shard-tls-key of another certificate",
        lambda p: _router(p, "--shard-tls-cert", str(p.guarded.cert), "--shard-tls-key", str(p.guarded.key)),
        2,
        lambda p: f"shard_tls_key {p.guarded.key} is not the private key of shard_tls_cert {p.guarded.cert}",
    ),
    Case(
        "classifier build-topic, out not empty",
        lambda p: ["classifier", "build-topic", "--out", str(p.data)],
        2,
        lambda p: f"--out {p.data} exists and is not an empty folder",
    ),
    Case(
        "demo, sample missing",
        lambda p: ["demo", "--sample", f"{p.tmp}/none.jsonl", *_data(p)],
        2,
        lambda p: f"--sample {p.tmp}/none.jsonl is not a file",
    ),
    Case(
        "serve, port out of range",
        lambda p: ["serve", "--port", "99999", *_data(p)],
        2,
        lambda p: "port 99999 is out of range",
    ),
    Case(
        "serve, negative filter cache",
        lambda p: ["serve", "--port", "0", "--filter-cache-ids", "-1", *_data(p)],
        2,
        lambda p: "filter_cache_ids must not be negative",
    ),
)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[Guarded]:
    folder = tmp_path_factory.mktemp("guarded")
    ca = Authority.create(folder, "cli-errors-ca")
    server_cert, server_key = ca.issue(folder, "server", server=True)
    client_cert, _ = ca.issue(folder, "client", server=False)
    config = ServerConfig(host="127.0.0.1", auth_token=TOKEN, tls_cert=server_cert, tls_key=server_key)
    app = AppConfig(store=StoreConfig(data_dir=folder / "data"), server=config, default_model=tiny_albert_dir)
    with running_server(app) as running:
        yield Guarded(running.target, ca.cert_path, client_cert, server_key)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path, guarded: Guarded) -> Places:
    tmp = tmp_path_factory.mktemp("cli-errors")
    data = tmp / "data"
    workspace = Workspace.open(AppConfig(store=StoreConfig(data_dir=data), default_model=tiny_albert_dir))
    try:
        workspace.catalog.create("notes", CollectionSpec(model="default"))
    finally:
        workspace.close()
    readonly = tmp / "readonly"
    Store.open(StoreConfig(data_dir=readonly)).close()
    corpus = tmp / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "text": "The kettle clicked off."}) + "\n", encoding="utf-8")
    database = StoreConfig(data_dir=readonly).url.removeprefix("sqlite:///")
    not_pem = tmp / "not-pem.txt"
    not_pem.write_text("not the token, and no certificate or key\n", encoding="utf-8")
    return Places(data, tmp, corpus, f"sqlite:///file:{database}?mode=ro&uri=true", guarded, not_pem)


@pytest.fixture(scope="module")
def outcomes(places: Places, tiny_albert_dir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = {case.name: pool.submit(run_albatross, case.argv(places), tiny_albert_dir) for case in CASES}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_failure_is_one_line_with_its_exit_code(
    case: Case, places: Places, outcomes: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = outcomes[case.name]
    printed = result.stdout + result.stderr

    assert "Traceback" not in printed, printed
    assert result.returncode == case.exit_code, printed
    lines = [line for line in result.stderr.splitlines() if line.startswith("albatross ")]
    assert len(lines) == 1, result.stderr
    assert case.says(places) in lines[0], lines[0]
    assert "secret" not in printed


@pytest.fixture
def served(tmp_path: Path, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    app = AppConfig(
        store=StoreConfig(data_dir=tmp_path / "data"),
        server=ServerConfig(host="127.0.0.1", poll_interval_s=0.05),
        default_model=tiny_albert_dir,
    )
    workspace = Workspace.open(app)
    try:
        workspace.catalog.create("notes", CollectionSpec(model="default"))
        workspace.ingestor.upsert(
            "notes", [Document("kettle", "The kettle clicked off."), Document("rain", "Rain all week.")]
        )
    finally:
        workspace.close()
    thread = ServerThread()
    running = thread.run(create_server(app, port=0))
    try:
        yield running
    finally:
        thread.run(running.stop(grace_s=1.0))
        thread.close()


def test_search_names_each_bad_line_of_a_queries_file_and_runs_the_good_ones(
    served: RunningServer, tmp_path: Path, tiny_albert_dir: Path
) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        '{"_id": "q1", "text": "kettle"}\nnot json\n{"_id": "q2"}\n{"_id": "q3", "text": "rain"}\n',
        encoding="utf-8",
    )
    run = tmp_path / "run.trec"

    result = run_albatross(
        [
            "search",
            "--queries",
            str(queries),
            "--collection",
            "notes",
            "--target",
            served.target,
            "--run-out",
            str(run),
        ],
        tiny_albert_dir,
    )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{queries}:2: not JSON" in result.stderr
    assert f"{queries}:3: missing field 'text'" in result.stderr
    assert {line.split()[0] for line in run.read_text().splitlines()} == {"q1", "q3"}
