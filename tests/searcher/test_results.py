"""Folding ranked chunk hits into documents."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.records import StoredChunk
from searcher.results import chunk_fetch_size, fold_chunk_hits, should_fetch_more


def chunk(chunk_id: int, doc: str) -> StoredChunk:
    return StoredChunk(
        chunk_id=chunk_id,
        external_id=doc,
        title=f"title of {doc}",
        text=f"chunk {chunk_id}",
        start=chunk_id * 10,
        end=chunk_id * 10 + 9,
        metadata={"doc": doc},
    )


CHUNKS = {1: chunk(1, "a"), 2: chunk(2, "a"), 3: chunk(3, "b"), 4: chunk(4, "c"), 5: chunk(5, "b")}


def test_a_document_is_represented_by_its_best_chunk() -> None:
    hits = fold_chunk_hits([0.9, 0.8, 0.7, 0.6], [2, 1, 3, 5], CHUNKS, k=10)

    assert [(h.external_id, h.score, h.text) for h in hits] == [
        ("a", 0.9, "chunk 2"),
        ("b", 0.7, "chunk 3"),
    ]
    assert (hits[0].start, hits[0].end, hits[0].title) == (20, 29, "title of a")
    assert hits[0].metadata == {"doc": "a"}


def test_only_the_top_k_documents_are_kept() -> None:
    hits = fold_chunk_hits([0.9, 0.8, 0.7], [1, 3, 4], CHUNKS, k=2)

    assert [h.external_id for h in hits] == ["a", "b"]


def test_padding_and_chunks_deleted_since_the_search_are_skipped() -> None:
    hits = fold_chunk_hits([0.9, 0.8, 0.7], [99, 4, -1], CHUNKS, k=5)

    assert [h.external_id for h in hits] == ["c"]


def test_the_index_order_is_kept_whatever_the_metric() -> None:
    # Distances (smaller is better) arrive best first too: folding must not re-sort.
    hits = fold_chunk_hits([0.1, 0.5, 0.9], [4, 3, 1], CHUNKS, k=3)

    assert [h.external_id for h in hits] == ["c", "b", "a"]


def test_fetch_size_over_fetches_but_never_past_the_index() -> None:
    assert chunk_fetch_size(k=10, available=1000) == 40
    assert chunk_fetch_size(k=10, available=25) == 25
    assert chunk_fetch_size(k=10, available=0) == 0


def test_fetch_more_only_when_folding_fell_short_and_the_index_may_have_more() -> None:
    assert should_fetch_more(documents_found=3, k=5, fetched=20, returned=20, available=100)
    assert not should_fetch_more(documents_found=5, k=5, fetched=20, returned=20, available=100)
    assert not should_fetch_more(documents_found=3, k=5, fetched=20, returned=12, available=100)
    assert not should_fetch_more(documents_found=3, k=5, fetched=100, returned=100, available=100)


@given(
    st.lists(st.sampled_from(sorted(CHUNKS)), max_size=20),
    st.integers(min_value=1, max_value=5),
)
def test_folding_yields_distinct_documents_in_rank_order(chunk_ids: list[int], k: int) -> None:
    scores = [1.0 - i / 100 for i in range(len(chunk_ids))]

    hits = fold_chunk_hits(scores, chunk_ids, CHUNKS, k=k)

    ids = [h.external_id for h in hits]
    assert len(ids) == len(set(ids)) <= k
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    expected = list(dict.fromkeys(CHUNKS[c].external_id for c in chunk_ids))[:k]
    assert ids == expected
