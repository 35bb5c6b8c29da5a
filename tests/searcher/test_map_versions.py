"""Which shard answers a router may merge: the whitening versions they say they ranked in."""

from __future__ import annotations

from protos.albatross.v1 import albatross_pb2 as pb
from searcher.map_versions import answered_in, lagging, merged_version, newest


def said(version: int | None) -> pb.SearchResponse:
    answer = pb.SearchResponse()
    if version is not None:
        answer.whitening_version = version
    return answer


def test_an_answer_says_its_version_zero_included_and_an_old_shard_says_nothing() -> None:
    assert answered_in(said(3)) == {3}
    assert answered_in(said(0)) == {0}  # no map: still a version to agree on
    assert answered_in(said(None)) == frozenset()


def test_a_batch_answer_says_the_versions_of_its_results() -> None:
    batch = pb.SearchBatchResponse(results=[said(2), said(2), said(None)])

    assert answered_in(batch) == {2}
    assert answered_in(pb.SearchBatchResponse(results=[said(1), said(2)])) == {1, 2}


def test_answers_of_one_version_are_merged_as_they_are() -> None:
    assert lagging([{1}, {1}, {1}]) == []
    assert lagging([{0}, {0}]) == []  # a collection without whitening
    assert lagging([{4}, frozenset(), {4}]) == []  # a shard that predates the field is not checked
    assert lagging([frozenset(), frozenset()]) == []


def test_the_answers_behind_the_newest_version_are_the_ones_to_ask_again() -> None:
    assert lagging([{2}, {1}, {2}]) == [1]
    assert lagging([{1}, {3}, {2}]) == [0, 2]
    assert lagging([{0}, {1}]) == [0]  # the first map rolling out: unwhitened is not comparable
    assert lagging([{1, 2}, {2}]) == [0]  # a shard that switched within one batch


def test_the_merged_answer_says_the_version_it_was_ranked_in() -> None:
    assert newest([{1}, {3}, frozenset()]) == 3
    assert newest([frozenset()]) is None
    assert merged_version([said(2), said(2)]) == 2
    assert merged_version([said(None), said(None)]) is None
