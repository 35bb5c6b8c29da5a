"""The one error table: every error class has a row, and the gRPC status a server answers with
and the exit code of the command agree for every error (directly, and through the status)."""

from __future__ import annotations

import grpc
import pytest

from albatross.exit_codes import exit_code_for, exit_code_for_status
from indexer import errors
from indexer.errors import FAILURES, INTERNAL, AlbatrossError, ExitCode, failure_of
from searcher.errors import INTERNAL_MESSAGE, status_for


def all_error_classes() -> list[type[AlbatrossError]]:
    found: list[type[AlbatrossError]] = []
    pending = [AlbatrossError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls is not AlbatrossError]


def an_instance(cls: type[AlbatrossError]) -> AlbatrossError:
    if issubclass(cls, errors.InvalidDocument):
        return cls("bad", record="file.jsonl:3", field="text")
    if issubclass(cls, errors.ShardUnavailable):
        return cls("shard 1 (127.0.0.1:1)", "connection refused")
    if issubclass(cls, errors.MixedWhiteningVersions):
        return cls("notes", {"shard 0 (127.0.0.1:1)": (2,), "shard 1 (127.0.0.1:2)": (1,)})
    return cls("what went wrong")


def test_every_error_class_has_its_own_row_or_an_ancestors() -> None:
    classes = all_error_classes()

    assert {errors.StoreUnavailable, errors.SnapshotCorrupt, errors.InvalidFilter} <= set(classes)
    for cls in classes:
        assert any(ancestor in failure.errors for ancestor in cls.__mro__ for failure in FAILURES), cls


def test_a_status_is_in_one_row_and_is_a_real_grpc_status() -> None:
    statuses = [failure.status for failure in FAILURES]

    assert len(statuses) == len(set(statuses))
    assert all(grpc.StatusCode[status] for status in statuses)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_server_status_and_exit_code_agree(cls: type[AlbatrossError]) -> None:
    error = an_instance(cls)
    code, message = status_for(error)

    assert code is grpc.StatusCode[failure_of(error).status]
    assert exit_code_for(error) == exit_code_for_status(code.name) == failure_of(error).exit_code
    assert (message == INTERNAL_MESSAGE) is (failure_of(error) is INTERNAL)


def test_codes_the_readme_gives() -> None:
    assert exit_code_for(errors.StoreUnavailable("db down")) == ExitCode.UNAVAILABLE == 5
    assert exit_code_for(errors.CollectionExists("notes")) == ExitCode.INVALID == 2
    assert exit_code_for(errors.InvalidDocument("x", record="f:1")) == 2
    assert exit_code_for(errors.CollectionNotFound("notes")) == 3
    assert exit_code_for(errors.ModelNotFound("m")) == 4
    assert exit_code_for(RuntimeError("a bug")) == exit_code_for_status("DATA_LOSS") == 70
    assert exit_code_for_status("DEADLINE_EXCEEDED") == 5 and exit_code_for_status("UNAUTHENTICATED") == 2


def test_a_mixed_merge_is_unavailable_and_names_the_collection_and_the_versions() -> None:
    error = errors.MixedWhiteningVersions("notes", {"shard 0 (a:1)": (2,), "shard 1 (b:1)": (1,)})

    code, message = status_for(error)

    assert code is grpc.StatusCode.UNAVAILABLE  # transient: a client may retry it as it is
    assert exit_code_for(error) == ExitCode.UNAVAILABLE
    assert "'notes'" in message and "shard 0 (a:1): 2" in message and "shard 1 (b:1): 1" in message
