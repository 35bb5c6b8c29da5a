"""The ``albatross`` command as a user runs it: real processes, a real server, one SQLite store.

The CLI processes and the in-process server share one data directory, so this also shows a
searcher picking up what a separate ``albatross ingest`` process wrote, without a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.config import AppConfig, ServerConfig, StoreConfig
from searcher.client import AlbatrossClient
from searcher.server import RunningServer, create_server
from tests.fixtures.tiny_models import build_tiny_classifier
from tests.searcher.test_grpc_end_to_end import ServerThread, wait_until_indexed

DOCS = [
    {
        "_id": "owl",
        "title": "Owls",
        "text": "Owls hunt small rodents silently at night.",
        "metadata": {"year": 2001},
    },
    {"_id": "tea", "title": "Tea", "text": "Green tea is steeped in water that is not quite boiling."},
    {
        "_id": "bus",
        "text": "The night bus runs every forty minutes after midnight.",
        "metadata": {"year": 2019},
    },
    {"_id": "sail", "text": "A sloop has one mast and a fore-and-aft rig."},
    {"_id": "fern", "text": "Ferns reproduce by spores rather than seeds."},
]


def albatross(
    data_dir: Path, model: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALBATROSS_MODEL": str(model)}
    return subprocess.run(
        [sys.executable, "-m", "albatross", *args, "--data-dir", str(data_dir)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def stats(data_dir: Path, model: Path, collection: str) -> dict[str, object]:
    result = albatross(data_dir, model, "stats", "--collection", collection, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "corpus.jsonl"
    lines = (
        [json.dumps(doc) for doc in DOCS[:3]]
        + ['{"_id": "broken", "title": "no text"}']
        + [json.dumps(doc) for doc in DOCS[3:]]
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ingest_reports_the_bad_record_keeps_the_good_ones_and_exits_1(
    tmp_path: Path, tiny_albert_dir: Path, corpus: Path
) -> None:
    result = albatross(tmp_path, tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress")
    assert result.returncode == 1
    assert f"{corpus}:4" in result.stderr and "missing field 'text'" in result.stderr
    assert "5 written" in result.stderr and "1 rejected" in result.stderr
    report = stats(tmp_path, tiny_albert_dir, "c")
    assert report["documents"] == 5
    assert report["index_vectors"] == report["chunks"] == 5
    assert report["index_sequence"] == report["last_sequence"] == 5

    again = albatross(tmp_path, tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress")
    assert "0 written, 5 unchanged" in again.stderr  # same content: nothing re-embedded
    assert stats(tmp_path, tiny_albert_dir, "c")["last_sequence"] == 5

    retagged = tmp_path / "retagged.jsonl"
    docs = [{**doc, "metadata": {"year": 1999}} if i < 2 else doc for i, doc in enumerate(DOCS)]
    retagged.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    moved = albatross(tmp_path, tiny_albert_dir, "ingest", str(retagged), "--collection", "c", "--no-progress")
    assert moved.returncode == 0, moved.stderr
    assert "0 written, 3 unchanged, 2 metadata updated, 0 rejected" in moved.stderr  # vectors kept
    assert stats(tmp_path, tiny_albert_dir, "c")["last_sequence"] == 5


def test_bulk_ingestion_embeds_in_int8_on_cpu_unless_told_otherwise(
    tmp_path: Path, tiny_albert_dir: Path, corpus: Path
) -> None:
    """The tiny model keeps its vectors under int8 (the encoder checks), so ``ingest`` takes it;
    ``--dtype float32`` asks for exact vectors."""
    fast = albatross(tmp_path / "a", tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress")
    assert "as int8 (min cosine to float32" in fast.stderr, fast.stderr
    exact = albatross(
        tmp_path / "b", tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress",
        "--dtype", "float32",
    )
    assert "as float32" in exact.stderr and "int8" not in exact.stderr, exact.stderr


def test_delete_and_stats_agree(tmp_path: Path, tiny_albert_dir: Path, corpus: Path) -> None:
    albatross(tmp_path, tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress")
    result = albatross(tmp_path, tiny_albert_dir, "delete", "--collection", "c", "owl", "tea", "nope")
    assert result.returncode == 0, result.stderr
    assert "deleted 2, not found 1" in result.stdout and "not found: nope" in result.stderr
    report = stats(tmp_path, tiny_albert_dir, "c")
    assert (report["documents"], report["chunks"], report["index_vectors"]) == (3, 3, 3)
    assert report["last_sequence"] == 7  # 5 adds, then one remove per deleted chunk


def test_unknown_collection_and_bad_flags_are_clear(tmp_path: Path, tiny_albert_dir: Path) -> None:
    missing = albatross(tmp_path, tiny_albert_dir, "stats", "--collection", "nope")
    assert missing.returncode == 3 and "collection 'nope' does not exist" in missing.stderr
    bad = albatross(
        tmp_path, tiny_albert_dir, "collections", "create", "x", "--window", "10", "--overlap", "10"
    )
    assert bad.returncode == 2 and "overlap" in bad.stderr


def wait_until_served(client: AlbatrossClient, collection: str) -> None:
    """The server sees a collection another process created, and has indexed all of it."""
    deadline = time.monotonic() + 30
    while collection not in {c.name for c in client.list_collections()}:
        assert time.monotonic() < deadline, "the server never saw the new collection"
        time.sleep(0.05)
    wait_until_indexed(client, collection)


@pytest.fixture
def served(tmp_path: Path, tiny_albert_dir: Path) -> Iterator[tuple[RunningServer, Path]]:
    app = AppConfig(
        store=StoreConfig(data_dir=tmp_path),
        server=ServerConfig(host="127.0.0.1", poll_interval_s=0.05),
        default_model=tiny_albert_dir,
    )
    thread = ServerThread()
    running = thread.run(create_server(app, port=0))
    try:
        yield running, tmp_path
    finally:
        thread.run(running.stop(grace_s=1.0))
        thread.close()


def test_a_running_searcher_finds_what_a_separate_ingest_process_wrote(
    served: tuple[RunningServer, Path], tiny_albert_dir: Path, corpus: Path
) -> None:
    server, data_dir = served
    result = albatross(data_dir, tiny_albert_dir, "ingest", str(corpus), "--collection", "c", "--no-progress")
    assert result.returncode == 1, result.stderr
    with AlbatrossClient(server.target, timeout=60) as client:
        wait_until_served(client, "c")
        assert client.search("c", DOCS[3]["text"], k=1)[0].external_id == "sail"

    search = albatross(
        data_dir,
        tiny_albert_dir,
        "search",
        DOCS[4]["text"],
        "--collection",
        "c",
        "--json",
        "--target",
        server.target,
    )
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)[0]["id"] == "fern"

    queries = data_dir / "queries.jsonl"
    queries.write_text(
        "\n".join(json.dumps({"_id": f"q{i}", "text": d["text"]}) for i, d in enumerate(DOCS)) + "\n"
    )
    run_file = data_dir / "run.trec"
    batch = albatross(
        data_dir,
        tiny_albert_dir,
        "search",
        "--collection",
        "c",
        "--queries",
        str(queries),
        "--k",
        "3",
        "--run-out",
        str(run_file),
        "--target",
        server.target,
    )
    assert batch.returncode == 0, batch.stderr
    rows = [line.split() for line in run_file.read_text().splitlines()]
    assert len(rows) == 15 and all(len(row) == 6 and row[1] == "Q0" for row in rows)
    firsts = {row[0]: row[2] for row in rows if row[3] == "1"}
    assert firsts == {f"q{i}": doc["_id"] for i, doc in enumerate(DOCS)}


def test_search_against_no_server_says_so(tmp_path: Path, tiny_albert_dir: Path) -> None:
    result = albatross(
        tmp_path,
        tiny_albert_dir,
        "search",
        "x",
        "--collection",
        "c",
        "--target",
        "127.0.0.1:1",
        "--timeout",
        "2",
    )
    assert result.returncode == 5
    assert "is `albatross serve` running at 127.0.0.1:1?" in result.stderr


def test_a_numeric_filter_finds_csv_documents(
    served: tuple[RunningServer, Path], tiny_albert_dir: Path
) -> None:
    """CSV cells used to arrive as strings, so ``{"year": {"gte": 2015}}`` dropped every CSV row."""
    server, data_dir = served
    path = data_dir / "films.csv"
    path.write_text(
        "_id,title,text,year,zip\n"
        "old,Old,A silent film about a lighthouse keeper.,2009,02139\n"
        "new,New,A documentary about night trains.,2019,02134\n"
        "newer,Newer,A comedy set in a bakery.,2021,01002\n"
        "late,Late,A thriller about a stolen violin.,soon,0\n",
        encoding="utf-8",
    )
    result = albatross(
        data_dir, tiny_albert_dir, "ingest", str(path), "--collection", "films", "--no-progress",
        "--csv-types", "year=int",
    )
    assert result.returncode == 1, result.stderr
    assert f"{path}:5" in result.stderr and "'year' is declared int" in result.stderr
    assert "3 written" in result.stderr and "1 rejected" in result.stderr
    with AlbatrossClient(server.target, timeout=60) as client:
        wait_until_served(client, "films")
    search = albatross(
        data_dir, tiny_albert_dir, "search", "a film", "--collection", "films", "--json", "--k", "10",
        "--filter", '{"year": {"gte": 2015}}', "--target", server.target,
    )
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)
    assert sorted(hit["id"] for hit in hits) == ["new", "newer"]
    assert {hit["metadata"]["zip"] for hit in hits} == {"02134", "01002"}  # codes with a leading zero stay strings


def test_ingest_warns_about_documents_outside_the_vocabulary_and_stats_counts_them(
    tmp_path: Path, tiny_albert_dir: Path
) -> None:
    path = tmp_path / "scripts.jsonl"
    rows = [
        {"_id": "ar", "text": "مرحبا بالعالم، كيف حالك اليوم؟"},
        {"_id": "ja", "text": "東京は日本の首都です。"},
        {"_id": "en", "text": DOCS[0]["text"]},
    ]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    result = albatross(tmp_path, tiny_albert_dir, "ingest", str(path), "--collection", "s", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {path}: 2 documents are mostly outside the vocabulary of {tiny_albert_dir.name}"
        in result.stderr
    )
    assert "ar, ja" in result.stderr and "3 written" in result.stderr
    assert stats(tmp_path, tiny_albert_dir, "s")["mostly_unknown_documents"] == 2


def test_vectors_exported_from_one_collection_ingest_into_one_without_a_model(
    served: tuple[RunningServer, Path], tiny_albert_dir: Path, corpus: Path
) -> None:
    server, data_dir = served
    albatross(data_dir, tiny_albert_dir, "ingest", str(corpus), "--collection", "text", "--no-progress")
    exported = data_dir / "text.jsonl"
    export = albatross(data_dir, tiny_albert_dir, "export", "--collection", "text", "--out", str(exported))
    assert export.returncode == 0, export.stderr
    assert "exported 5 documents of text" in export.stderr
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert [row["_id"] for row in rows] == [doc["_id"] for doc in DOCS]
    dimension = len(rows[0]["vector"])

    broken = [
        {**rows[0], "_id": "short", "vector": rows[0]["vector"][:-1]},
        {**rows[1], "_id": "nan", "vector": [float("nan")] * dimension},
        {"_id": "bare", "text": "no vector at all"},
    ]
    mixed = data_dir / "mixed.jsonl"
    lines = [json.dumps(row) for row in rows[:2] + broken + rows[2:]]  # json writes NaN as NaN
    mixed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest = albatross(
        data_dir, tiny_albert_dir, "ingest", str(mixed), "--collection", "own", "--no-progress",
        "--model", "none", "--dimension", str(dimension),
    )
    assert ingest.returncode == 1, ingest.stderr
    assert f"{mixed}:3: field 'vector' has {dimension - 1} values, the collection takes {dimension}" in ingest.stderr
    assert f"{mixed}:4: field 'vector'[0] is nan" in ingest.stderr
    assert f"{mixed}:5: missing field 'vector'" in ingest.stderr
    assert "5 written" in ingest.stderr and "3 rejected" in ingest.stderr
    report = stats(data_dir, tiny_albert_dir, "own")
    assert (report["documents"], report["chunks"], report["model"]) == (5, 5, "none")

    refused = albatross(data_dir, tiny_albert_dir, "ingest", str(exported), "--collection", "text", "--no-progress")
    assert refused.returncode == 1 and "takes no outside vectors" in refused.stderr
    csv_file = data_dir / "plain.csv"
    csv_file.write_text("_id,text\na,A\n", encoding="utf-8")
    no_csv = albatross(data_dir, tiny_albert_dir, "ingest", str(csv_file), "--collection", "own", "--no-progress")
    assert no_csv.returncode == 2 and "CSV cannot carry vectors" in no_csv.stderr

    with AlbatrossClient(server.target, timeout=60) as client:
        wait_until_served(client, "own")
        for row in rows:
            hits = client.search_vector("own", np.array(row["vector"], dtype=np.float32), k=1)
            assert hits[0].external_id == row["_id"] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    again = data_dir / "own.jsonl"
    albatross(data_dir, tiny_albert_dir, "export", "--collection", "own", "--out", str(again))
    assert again.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")  # bit for bit


def test_ingest_with_a_classifier_labels_every_document_and_search_filters_by_label(
    served: tuple[RunningServer, Path], tiny_albert_dir: Path, corpus: Path
) -> None:
    server, data_dir = served
    classifier = build_tiny_classifier("albert-base-v2", data_dir / "sentiment")
    result = albatross(
        data_dir, tiny_albert_dir, "ingest", str(corpus), "--collection", "rated", "--no-progress",
        "--classifier", str(classifier), "--label-field", "sentiment",
    )
    assert result.returncode == 1 and "5 written" in result.stderr, result.stderr
    assert stats(data_dir, tiny_albert_dir, "rated")["classifier"] == str(classifier)
    exported = albatross(data_dir, tiny_albert_dir, "export", "--collection", "rated")
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 5
    assert all(row["metadata"]["sentiment"] in {"neg", "pos"} for row in rows)
    assert all(0.5 <= row["metadata"]["label_score"] <= 1 for row in rows)
    with AlbatrossClient(server.target, timeout=60) as client:
        wait_until_served(client, "rated")
    for label in ("neg", "pos"):
        search = albatross(
            data_dir, tiny_albert_dir, "search", "night", "--collection", "rated", "--json", "--k", "10",
            "--filter", json.dumps({"sentiment": label}), "--target", server.target,
        )
        assert search.returncode == 0, search.stderr
        found = {hit["id"] for hit in json.loads(search.stdout)}
        assert found == {row["_id"] for row in rows if row["metadata"]["sentiment"] == label}


def test_search_modes_from_the_command_line(
    served: tuple[RunningServer, Path], tiny_albert_dir: Path, corpus: Path
) -> None:
    server, data_dir = served
    ingest = albatross(
        data_dir, tiny_albert_dir, "ingest", str(corpus), "--collection", "modes", "--no-progress"
    )
    assert ingest.returncode == 1, ingest.stderr  # the corpus carries one bad record on purpose
    with AlbatrossClient(server.target, timeout=60) as client:
        deadline = time.monotonic() + 30
        while "modes" not in {c.name for c in client.list_collections()}:
            assert time.monotonic() < deadline, "the server never saw the new collection"
            time.sleep(0.05)
        while (s := client.get_collection("modes").stats).lexical_sequence < s.last_sequence:
            assert time.monotonic() < deadline, f"the lexical index never caught up: {s}"
            time.sleep(0.05)

    def search(*flags: str) -> subprocess.CompletedProcess[str]:
        return albatross(
            data_dir, tiny_albert_dir, "search", "--collection", "modes", "--target", server.target, *flags
        )

    lexical = search("sloop mast", "--mode", "lexical", "--json")
    assert lexical.returncode == 0, lexical.stderr
    (first, *_) = json.loads(lexical.stdout)
    assert first["id"] == "sail" and [leg["leg"] for leg in first["legs"]] == ["lexical"]
    hybrid = search("spores", "--mode", "hybrid", "--fusion", "rrf", "--rrf-k", "10")
    assert hybrid.returncode == 0, hybrid.stderr
    assert "[fern] (dense #" in hybrid.stdout and "lexical #1" in hybrid.stdout.splitlines()[0]
    adaptive = search("spores", "--mode", "hybrid", "--fusion", "adaptive", "--dense-weight", "0.5", "--json")
    assert adaptive.returncode == 0, adaptive.stderr
    assert {leg["leg"] for hit in json.loads(adaptive.stdout) for leg in hit["legs"]} == {"dense", "lexical"}
    bad = search("spores", "--mode", "hybrid", "--dense-weight", "2")
    assert bad.returncode == 2 and "dense_weight" in bad.stderr and "Traceback" not in bad.stderr
