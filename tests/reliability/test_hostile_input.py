"""Hostile input, property-based: over the gRPC API of a real server (port 0, one per module) and
over the file readers.

Every bad request ends with the right status (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED) and a message naming the field, never UNKNOWN or INTERNAL; after every example
the server still answers a normal search correctly and its tables are intact. The readers turn any
bytes into Documents and Rejections only, and read every good record among bad ones.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.config import ServerConfig
from indexer.filters import FIELD_PATTERN
from indexer.readers import Rejection, read_path
from indexer.records import Document
from protos.albatross.v1 import albatross_pb2 as pb
from searcher import convert
from searcher.client import AlbatrossClient
from searcher.server import RunningServer
from tests.searcher.serving import running_server, served_app
from tests.searcher.test_grpc_end_to_end import wait_until_indexed

NOTES = "notes"
SCRATCH = "scratch"
DOCUMENTS = [
    Document(
        "kettle",
        "The kettle clicked off just as the rain started.",
        metadata={"room": "kitchen", "year": 2020},
    ),
    Document("umbrella", "She left her umbrella on the bus again.", metadata={"room": "hall", "flag": True}),
    Document(
        "tomatoes", "Our neighbour grows tomatoes and beans.", metadata={"room": "it's", "year": 1999.5}
    ),
    Document("library", "The library closes early on Saturdays.", metadata={"room": "hall", "flag": False}),
]
INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE documents; --",
    '") OR 1=1 --',
    "hall' --",
    "%",
    "_",
    "*",
    "$.room",
    "\\",
    "room\x00",
    "1; DELETE FROM chunks",
)
SERVER_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
READER_EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)
BLANK = st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003\u3000", max_size=12)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    config = ServerConfig(poll_interval_s=0.05, batch_max_wait_ms=1.0)
    with running_server(served_app(tmp_path_factory.mktemp("hostile"), tiny_albert_dir, config)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AlbatrossClient]:
    with AlbatrossClient(server.target, timeout=60) as albatross:
        albatross.create_collection(NOTES)
        assert {s.status for s in albatross.upsert(NOTES, DOCUMENTS)} == {"written"}
        albatross.create_collection(SCRATCH)
        wait_until_indexed(albatross, NOTES)
        yield albatross


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    """A channel that sends whatever bytes it is given, up to 128 MB."""
    limit = 128 * 1024 * 1024
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    with grpc.insecure_channel(server.target, options=options) as opened:
        yield opened


@pytest.fixture(scope="module")
def tried() -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    yield counts
    print(f"\n[hostile] inputs tried: {dict(counts)}")


@pytest.fixture(autouse=True, scope="module")
def report(tried: Counter[str], figures: Counter[str]) -> Iterator[None]:
    yield
    for name, value in tried.items():
        figures[f"hostile inputs: {name}"] += value


def still_answers(client: AlbatrossClient) -> None:
    """A normal search finds the right document, and no table lost a row."""
    assert client.search(NOTES, DOCUMENTS[0].text, k=1)[0].external_id == "kettle"
    assert client.get_collection(NOTES).stats.documents == len(DOCUMENTS)


def refused(call: Any, code: grpc.StatusCode, *names: str) -> str:
    """Run ``call``; it must fail with ``code`` and a message naming one of ``names``."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    details = caught.value.details() or ""
    assert caught.value.code() is code, f"{caught.value.code()}: {details}"
    assert not names or any(name in details for name in names), details
    return details


def raw(channel: grpc.Channel, method: str) -> Any:
    return channel.unary_unary(f"/albatross.v1.{method}", request_serializer=None, response_deserializer=None)


# --- search: text, k, collection names ----------------------------------------------------------


@SERVER_EXAMPLES
@given(
    query=st.one_of(TEXT, BLANK),
    k=st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 1000, 1001])),
)
def test_any_query_text_and_k_is_answered_or_refused_naming_the_field(
    client: AlbatrossClient, tried: Counter[str], query: str, k: int
) -> None:
    tried["search text and k"] += 1
    if not query.strip():
        refused(lambda: client.search(NOTES, query, k), grpc.StatusCode.INVALID_ARGUMENT, "query")
    elif not 1 <= k <= convert.MAX_K:
        refused(lambda: client.search(NOTES, query, k), grpc.StatusCode.INVALID_ARGUMENT, "k")
    else:
        hits = client.search(NOTES, query, k)
        assert len(hits) == min(k, len(DOCUMENTS))
    still_answers(client)


@SERVER_EXAMPLES
@given(name=st.one_of(TEXT, BLANK, st.sampled_from(["../notes", "notes ", "NOTES", "x" * 300])))
def test_an_unknown_collection_is_not_found_in_every_call(
    client: AlbatrossClient, tried: Counter[str], name: str
) -> None:
    if name in (NOTES, SCRATCH):
        return
    tried["collection names"] += 1
    calls = [
        lambda: client.search(name, "kettle", 3),
        lambda: client.search_batch(name, ["kettle"], 3),
        lambda: client.get_documents(name, ["kettle"]),
        lambda: client.get_collection(name),
        lambda: client.delete(name, ["kettle"]),
        lambda: client.upsert(name, [Document("x", "some text")]),
    ]
    for call in calls:
        if name.strip():
            refused(call, grpc.StatusCode.NOT_FOUND, "does not exist")
        else:
            refused(call, grpc.StatusCode.INVALID_ARGUMENT, "collection", "name")
    still_answers(client)


# --- metadata filters, injection included -------------------------------------------------------

FIELDS = st.one_of(
    st.sampled_from(["room", "year", "flag", "missing", "room\n"]), TEXT, st.sampled_from(INJECTIONS)
)
NUMBERS = st.one_of(st.floats(), st.integers(-(10**6), 10**6).map(float), st.sampled_from([2020.0, 1999.5]))
VALUES = st.one_of(
    st.builds(
        lambda s: pb.Value(string_value=s),
        st.one_of(TEXT, st.sampled_from(["hall", "kitchen", "it's", *INJECTIONS])),
    ),
    st.builds(lambda n: pb.Value(number_value=n), NUMBERS),
    st.builds(lambda b: pb.Value(bool_value=b), st.booleans()),
    st.just(pb.Value()),
)
RANGES = st.builds(
    lambda bounds: pb.Range(**bounds),
    st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), NUMBERS, max_size=3),
)


@st.composite
def conditions(draw: st.DrawFn) -> pb.Condition:
    condition = pb.Condition(field=draw(FIELDS))
    op = draw(st.sampled_from(["equals", "one_of", "range", "none"]))
    if op == "equals":
        condition.equals.CopyFrom(draw(VALUES))
    elif op == "one_of":
        condition.one_of.values.extend(draw(st.lists(VALUES, max_size=3)))
        condition.one_of.SetInParent()
    elif op == "range":
        condition.range.CopyFrom(draw(RANGES))
    return condition


def _scalar(value: pb.Value) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


def _valid(condition: pb.Condition) -> bool:
    """What the server accepts: a plain field name, one operation, finite values, sane bounds."""
    if not condition.field.strip() or not FIELD_PATTERN.fullmatch(condition.field):
        return False
    op = condition.WhichOneof("op")
    values = {"equals": [condition.equals], "one_of": list(condition.one_of.values), "range": []}.get(
        op or ""
    )
    if values is None or (op == "one_of" and not values):
        return False
    for value in values:
        scalar = _scalar(value)
        if scalar is None or (isinstance(scalar, float) and not math.isfinite(scalar)):
            return False
    if op == "range":
        bounds = {
            n: getattr(condition.range, n) for n in ("gt", "gte", "lt", "lte") if condition.range.HasField(n)
        }
        if not bounds or {"gt", "gte"} <= set(bounds) or {"lt", "lte"} <= set(bounds):
            return False
        return all(math.isfinite(b) for b in bounds.values())
    return True


def _same(stored: Any, wanted: Any) -> bool:
    """JSON equality that keeps booleans, numbers and strings apart, as the SQL filter does."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return stored == wanted


def _matches(metadata: dict[str, Any], condition: pb.Condition) -> bool:
    stored = metadata.get(condition.field)
    op = condition.WhichOneof("op")
    if op == "equals":
        return _same(stored, _scalar(condition.equals))
    if op == "one_of":
        return any(_same(stored, _scalar(v)) for v in condition.one_of.values)
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    limits = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}
    return all(
        compare(float(stored), getattr(condition.range, name))
        for name, compare in limits.items()
        if condition.range.HasField(name)
    )


@SERVER_EXAMPLES
@given(chosen=st.lists(conditions(), max_size=3))
def test_a_filter_matches_exactly_its_documents_or_is_refused_and_injection_matches_nothing(
    client: AlbatrossClient, channel: grpc.Channel, tried: Counter[str], chosen: list[pb.Condition]
) -> None:
    tried["filters"] += 1
    request = pb.SearchRequest(collection=NOTES, query="the rain", k=10, filter=pb.Filter(conditions=chosen))
    search = raw(channel, "Search/Search")
    if not all(_valid(c) for c in chosen):
        refused(
            lambda: search(request.SerializeToString(), timeout=60),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter",
        )
    else:
        response = pb.SearchResponse.FromString(search(request.SerializeToString(), timeout=60))
        expected = {d.external_id for d in DOCUMENTS if all(_matches(dict(d.metadata), c) for c in chosen)}
        assert {hit.id for hit in response.hits} == expected
    still_answers(client)


# --- documents: empty, blank, NUL, huge, deeply nested metadata --------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(), TEXT)
METADATA = st.dictionaries(
    TEXT,
    st.recursive(
        JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=12,
    ),
    max_size=4,
)


def _depth(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_depth(v, depth + 1) for v in value), default=depth + 1)
    return depth


def _nested(levels: int) -> dict[str, Any]:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"deeper": value}
    return value


@st.composite
def documents(draw: st.DrawFn) -> Document:
    metadata = draw(
        st.one_of(METADATA, st.builds(_nested, st.integers(7, 12)), st.just({"blob": "x" * 70_000}))
    )
    return Document(
        external_id=draw(st.one_of(TEXT, BLANK, st.just(""))),
        text=draw(st.one_of(TEXT, BLANK, TEXT.map(lambda t: t + "\x00"))),
        title=draw(st.one_of(st.just(""), TEXT)),
        metadata=metadata,
    )


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _rejected_field(document: Document) -> str | None:
    """The field validation names first, or None for a document it accepts. NaN and infinity
    have no JSON form: metadata holding one is refused as it is decoded, before validation."""
    if not _finite(document.metadata):
        return "metadata"
    for field, value, limit in (("id", document.external_id, 512), ("text", document.text, 1_000_000)):
        if not value.strip() or "\x00" in value or len(value) > limit:
            return field
    if "\x00" in document.title or len(document.title) > 4096:
        return "title"
    sent_metadata = convert.struct_to_dict(convert.dict_to_struct(document.metadata))  # what arrives
    encoded = json.dumps(sent_metadata, ensure_ascii=False)
    if _depth(sent_metadata) > 8 or len(encoded.encode()) > 65_536 or "\\u0000" in encoded:
        return "metadata"
    return None


@SERVER_EXAMPLES
@given(batch=st.lists(documents(), min_size=1, max_size=3, unique_by=lambda d: d.external_id))
def test_every_document_is_written_back_exactly_or_rejected_naming_its_field(
    client: AlbatrossClient, tried: Counter[str], batch: list[Document]
) -> None:
    tried["documents"] += len(batch)
    statuses = client.upsert(SCRATCH, batch)
    assert [s.external_id for s in statuses] == [d.external_id for d in batch]
    for document, status in zip(batch, statuses, strict=True):
        field = _rejected_field(document)
        if field is not None:
            assert status.status == "rejected" and f"'{field}'" in (status.error or ""), (field, status)
            continue
        assert status.status in ("written", "unchanged"), status
        (stored,) = client.get_documents(SCRATCH, [document.external_id])
        expected = convert.struct_to_dict(convert.dict_to_struct(document.metadata))
        assert (stored.text, stored.title, dict(stored.metadata)) == (document.text, document.title, expected)
    still_answers(client)


def test_metadata_nested_past_the_wire_limit_is_invalid_argument(
    client: AlbatrossClient, channel: grpc.Channel, tried: Counter[str]
) -> None:
    tried["documents"] += 1
    message = pb.UpsertRequest(collection=SCRATCH)
    convert.dict_to_struct({"deep": _nested(120)}, message.documents.add(id="deep", text="deep").metadata)
    upsert = channel.stream_stream(
        "/albatross.v1.Ingest/Upsert", request_serializer=None, response_deserializer=None
    )

    refused(
        lambda: list(upsert(iter([message.SerializeToString()]), timeout=60)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UpsertRequest",
    )
    still_answers(client)


# --- raw bytes: invalid UTF-8 and whatever else a client can put on the wire --------------------

RAW_METHODS = (
    "Search/Search",
    "Search/SearchBatch",
    "Search/GetDocuments",
    "Ingest/Delete",
    "Collections/GetCollection",
)


@SERVER_EXAMPLES
@given(method=st.sampled_from(RAW_METHODS), payload=st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_as_invalid_argument_or_not_found_never_unknown(
    client: AlbatrossClient, channel: grpc.Channel, tried: Counter[str], method: str, payload: bytes
) -> None:
    tried["raw requests"] += 1
    try:
        raw(channel, method)(payload, timeout=60)
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (
            error.code(),
            error.details(),
        )
        assert "Unexpected" not in (error.details() or "")
    still_answers(client)


@pytest.mark.parametrize(
    ("method", "message", "field"),
    [
        ("Search/Search", pb.SearchRequest(collection=NOTES, query="Hallo", k=3), "query"),
        ("Search/Search", pb.SearchRequest(collection="Hallo", query="rain", k=3), "collection"),
        (
            "Search/Search",
            pb.SearchRequest(
                collection=NOTES,
                query="rain",
                k=3,
                filter=pb.Filter(
                    conditions=[pb.Condition(field="room", equals=pb.Value(string_value="Hallo"))]
                ),
            ),
            "filter.conditions.equals.string_value",
        ),
        ("Search/GetDocuments", pb.GetDocumentsRequest(collection=NOTES, ids=["Hallo"]), "ids"),
    ],
)
def test_invalid_utf8_in_a_string_field_is_invalid_argument_naming_it(
    client: AlbatrossClient, channel: grpc.Channel, tried: Counter[str], method: str, message: Any, field: str
) -> None:
    tried["invalid UTF-8 fields"] += 1
    payload = message.SerializeToString().replace(b"Hallo", b"H\xffllo")

    details = refused(
        lambda: raw(channel, method)(payload, timeout=60), grpc.StatusCode.INVALID_ARGUMENT, field
    )

    assert "UTF-8" in details
    still_answers(client)


# --- sizes and deadlines -------------------------------------------------------------------------


def test_a_10_mb_query_is_refused_naming_the_field_without_being_embedded(
    client: AlbatrossClient, tried: Counter[str]
) -> None:
    tried["oversized"] += 2
    query = "rain " * (2 * 1024 * 1024)

    refused(lambda: client.search(NOTES, query, 3), grpc.StatusCode.INVALID_ARGUMENT, "query")
    refused(
        lambda: client.search_batch(NOTES, ["rain", query], 3), grpc.StatusCode.INVALID_ARGUMENT, "queries[1]"
    )
    still_answers(client)


def test_a_text_over_the_limit_is_rejected_naming_the_field(
    client: AlbatrossClient, tried: Counter[str]
) -> None:
    tried["oversized"] += 2
    statuses = client.upsert(
        SCRATCH, [Document("long", "a" * 1_000_001), Document("huge", "b " * 5 * 1024 * 1024)]
    )

    assert [s.status for s in statuses] == ["rejected", "rejected"]
    assert all("'text'" in (s.error or "") and "more than the limit" in (s.error or "") for s in statuses)
    still_answers(client)


def test_a_message_over_max_message_bytes_is_resource_exhausted(
    server: RunningServer, client: AlbatrossClient, channel: grpc.Channel, tried: Counter[str]
) -> None:
    tried["oversized"] += 1
    limit = server.workspace.config.server.max_message_bytes
    request = pb.SearchRequest(collection=NOTES, query="x" * (limit + 1024), k=3)

    refused(
        lambda: raw(channel, "Search/Search")(request.SerializeToString(), timeout=60),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    )
    still_answers(client)


def test_too_many_queries_in_one_batch_are_refused(client: AlbatrossClient, tried: Counter[str]) -> None:
    tried["oversized"] += 1
    refused(
        lambda: client.search_batch(NOTES, ["rain"] * 1001, 3), grpc.StatusCode.INVALID_ARGUMENT, "queries"
    )
    still_answers(client)


@pytest.mark.parametrize("call", ["search", "search_batch", "upsert", "get_documents"])
def test_an_expired_deadline_is_deadline_exceeded_and_harms_nothing(
    client: AlbatrossClient, tried: Counter[str], call: str
) -> None:
    tried["expired deadlines"] += 1
    calls = {
        "search": lambda: client.search(NOTES, "rain", 3, timeout=1e-6),
        "search_batch": lambda: client.search_batch(NOTES, ["rain", "bus"], 3, timeout=1e-6),
        # gRPC's deadline clock counts milliseconds: on a fast host a microsecond deadline let 3
        # of 200 upserts and 251 of 300 id lookups through, so these two get one already past.
        # (Searches wait for the micro-batcher and expired in the server in 200 of 200.)
        "upsert": lambda: client.upsert(SCRATCH, [Document("late", "too late")], timeout=-1.0),
        "get_documents": lambda: client.get_documents(NOTES, ["kettle"], timeout=-1.0),
    }
    refused(calls[call], grpc.StatusCode.DEADLINE_EXCEEDED)
    still_answers(client)


@pytest.mark.parametrize("ids", [[""], ["kettle", "  "], ["\t"]])
def test_blank_ids_are_refused_naming_their_position(
    client: AlbatrossClient, tried: Counter[str], ids: list[str]
) -> None:
    tried["blank ids"] += 2
    position = next(i for i, value in enumerate(ids) if not value.strip())
    refused(lambda: client.delete(NOTES, ids), grpc.StatusCode.INVALID_ARGUMENT, f"ids[{position}]")
    refused(lambda: client.get_documents(NOTES, ids), grpc.StatusCode.INVALID_ARGUMENT, f"ids[{position}]")
    still_answers(client)


# --- the file readers ----------------------------------------------------------------------------


@READER_EXAMPLES
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".jsonl", ".csv", ".parquet", ".ndjson"]))
def test_any_bytes_in_a_file_give_only_documents_and_rejections(
    tmp_path: Path, tried: Counter[str], data: bytes, suffix: str
) -> None:
    tried["reader files of random bytes"] += 1
    path = tmp_path / f"input{suffix}"
    path.write_bytes(data)

    items = list(read_path(str(path)))

    assert all(isinstance(item, Document | Rejection) for item in items)


GOOD_IDS = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
GOOD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60
).filter(str.strip)
# Never a JSON object: starts with a closing brace, and holds no line break.
BAD_LINE = st.binary(max_size=60).map(lambda b: b"}" + b.replace(b"\n", b""))


@READER_EXAMPLES
@given(lines=st.lists(st.one_of(st.tuples(GOOD_IDS, GOOD_TEXT, st.booleans()), BAD_LINE), max_size=20))
def test_every_good_jsonl_line_among_bad_ones_is_read_and_every_bad_one_reported(
    tmp_path: Path, tried: Counter[str], lines: list[Any]
) -> None:
    tried["reader JSONL lines"] += len(lines)
    encoded = [
        json.dumps({"_id": line[0], "text": line[1]}, ensure_ascii=line[2]).encode()
        if isinstance(line, tuple)
        else line
        for line in lines
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(encoded) + b"\n")

    items = list(read_path(str(path)))

    good = [(line[0], line[1]) for line in lines if isinstance(line, tuple)]
    assert [(d.external_id, d.text) for d in items if isinstance(d, Document)] == good
    bad_lines = [f"{path}:{n}" for n, line in enumerate(lines, start=1) if not isinstance(line, tuple)]
    assert [r.record for r in items if isinstance(r, Rejection)] == bad_lines


# Over csv's default field limit (131072 characters), under the text limit: a good row.
LONG_ROW = ("long", "y" * 200_000)


@READER_EXAMPLES
@given(
    rows=st.lists(
        st.one_of(
            st.tuples(GOOD_IDS, GOOD_TEXT), st.just(LONG_ROW), st.sampled_from(["empty", "extra", "noid"])
        ),
        max_size=15,
    )
)
def test_every_good_csv_row_among_bad_ones_is_read(
    tmp_path: Path, tried: Counter[str], rows: list[Any]
) -> None:
    import csv

    tried["reader CSV rows"] += len(rows)
    path = tmp_path / "mixed.csv"
    bad = {"empty": ["x", ""], "extra": ["x", "text", "surplus"], "noid": ["", "text"]}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["_id", "text"])
        for row in rows:
            writer.writerow(list(row) if isinstance(row, tuple) else bad[row])

    items = list(read_path(str(path)))

    good = [(row[0], row[1]) for row in rows if isinstance(row, tuple)]
    assert [(d.external_id, d.text) for d in items if isinstance(d, Document)] == good
    assert sum(isinstance(item, Rejection) for item in items) == len(rows) - len(good)
    assert all(re.search(r":\d+", r.record) for r in items if isinstance(r, Rejection))
