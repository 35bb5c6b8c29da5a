"""``albatross search`` against a real server on loopback: one query or a file of them, text or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from albatross.cli import main
from albatross.exit_codes import EXIT_INVALID
from indexer.config import ServerConfig
from indexer.records import Document
from searcher.client import AlbatrossClient
from searcher.server import RunningServer
from tests.searcher.serving import running_server, served_app

DOCUMENTS = [
    Document("kettle", "The kettle clicked off just as the rain started.", metadata={"room": "kitchen"}),
    Document("umbrella", "She left her umbrella on the bus again.", metadata={"room": "hall"}),
    Document("library", "The library closes early on Saturdays.", metadata={"room": "hall"}),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    app = served_app(
        tmp_path_factory.mktemp("cli-search"), tiny_albert_dir, ServerConfig(poll_interval_s=0.05)
    )
    with running_server(app) as running:
        with AlbatrossClient(running.target, timeout=60) as client:
            client.create_collection("notes")
            client.upsert("notes", DOCUMENTS)
            while (stats := client.get_collection("notes").stats).index_sequence < stats.last_sequence:
                pass
        yield running


@pytest.fixture()
def queries(tmp_path: Path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q1", "text": "rain"}\n{"_id": "q2", "text": "books"}\n')
    return path


def test_a_query_and_a_file_of_queries_together_are_refused(
    queries: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["search", "rain", "--collection", "notes", "--queries", str(queries), "--target", "127.0.0.1:1"]
    )
    assert code == EXIT_INVALID
    assert "give a query or --queries FILE, not both" in capsys.readouterr().err


def test_json_with_a_file_of_queries_prints_one_line_per_query(
    server: RunningServer, queries: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "--collection", "notes", "--queries", str(queries), "--k", "2", "--json"]
    assert main([*argv, "--target", server.target, "--filter", '{"room": "hall"}']) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["_id"], line["query"]) for line in lines] == [("q1", "rain"), ("q2", "books")]
    assert all(
        len(line["hits"]) == 2 and {h["id"] for h in line["hits"]} == {"umbrella", "library"}
        for line in lines
    )


def test_a_filter_on_a_field_name_that_is_not_allowed_is_one_line_naming_it(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "rain", "--collection", "notes", "--target", server.target]
    assert main([*argv, "--filter", '{"room) OR 1=1 --": "hall"}']) == EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert "room) OR 1=1 --" in err and "must match" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_without_json_a_file_of_queries_prints_a_trec_run(
    server: RunningServer, queries: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "search",
                "--collection",
                "notes",
                "--queries",
                str(queries),
                "--k",
                "1",
                "--target",
                server.target,
            ]
        )
        == 0
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(row[0], row[1], row[3]) for row in rows] == [("q1", "Q0", "1"), ("q2", "Q0", "1")]


def test_search_help_lists_what_search_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--data-dir" not in text and "--device" not in text
    assert "default 127.0.0.1:50051" in text
    assert '"in"' in text and "gte" in text
