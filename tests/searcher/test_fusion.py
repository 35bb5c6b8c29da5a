"""Fusion of a dense and a lexical hit list: hand-computed cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.errors import InvalidArgument
from indexer.records import CollectionSpec, Fusion, FusionMethod
from searcher.fusion import convex_scores, dense_share, fuse, min_max, rrf_scores
from searcher.results import Hit, LegHit


def hits(leg: str, *scored: tuple[str, float]) -> list[Hit]:
    return [
        Hit(key, score, f"title {key}", f"{leg} text of {key}", 0, 1, legs=(LegHit(leg, score, rank),))
        for rank, (key, score) in enumerate(scored, start=1)
    ]


def test_rrf_by_hand() -> None:
    fused = rrf_scores([["a", "b", "c"], ["c", "a"]], rrf_k=60)
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61})


def test_convex_by_hand() -> None:
    fused = convex_scores([[("a", 0.9), ("b", 0.5), ("c", 0.1)], [("c", 12.0), ("d", 4.0)]], [0.7, 0.3])
    assert fused == pytest.approx({"a": 0.7, "b": 0.35, "c": 0.3, "d": 0.0})


def test_min_max_edges() -> None:
    assert min_max([]) == [] and min_max([3.0]) == [1.0] and min_max([2.0, 2.0]) == [1.0, 1.0]
    assert min_max([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]


def test_fuse_rrf_keeps_every_legs_score_and_the_dense_chunk() -> None:
    dense = hits("dense", ("a", 0.9), ("b", 0.8))
    lexical = hits("lexical", ("b", 14.0), ("c", 9.0))
    fused = fuse(dense, lexical, Fusion(FusionMethod.RRF, rrf_k=60), k=3, query="b")
    assert [h.external_id for h in fused] == ["b", "a", "c"]
    b = fused[0]
    assert b.score == pytest.approx(1 / 62 + 1 / 61)
    assert b.legs == (LegHit("dense", 0.8, 2), LegHit("lexical", 14.0, 1))
    assert b.text == "dense text of b"
    assert fused[2].legs == (LegHit("lexical", 9.0, 2),)


def test_fuse_ties_break_by_best_rank_then_id() -> None:
    # a and x each sit at rank 1 of one leg: equal RRF scores, equal best rank, so by id.
    fused = fuse(
        hits("dense", ("x", 0.5)), hits("lexical", ("a", 3.0)), Fusion(FusionMethod.RRF), k=2, query="a"
    )
    assert [h.external_id for h in fused] == ["a", "x"]


def test_convex_weight_one_is_dense_order_and_zero_is_lexical_order() -> None:
    dense = hits("dense", ("a", 0.9), ("b", 0.8), ("c", 0.1))
    lexical = hits("lexical", ("c", 20.0), ("b", 10.0), ("a", 1.0))
    assert [
        h.external_id
        for h in fuse(dense, lexical, Fusion(FusionMethod.CONVEX, dense_weight=1.0), 3, query="q")
    ] == ["a", "b", "c"]
    assert [
        h.external_id
        for h in fuse(dense, lexical, Fusion(FusionMethod.CONVEX, dense_weight=0.0), 3, query="q")
    ] == ["c", "b", "a"]


def test_adaptive_is_convex_with_the_mirrored_weight_for_an_exact_term_lookup() -> None:
    dense = hits("dense", ("a", 0.9), ("b", 0.5), ("c", 0.1))
    lexical = hits("lexical", ("c", 20.0), ("b", 10.0), ("a", 1.0))
    adaptive = Fusion(FusionMethod.ADAPTIVE, dense_weight=0.75)

    def order(fusion: Fusion, query: str) -> list[tuple[str, float]]:
        return [(h.external_id, round(h.score, 9)) for h in fuse(dense, lexical, fusion, 3, query=query)]

    prose, part = "which owls hunt by day", "owls QX-4471-B"
    assert dense_share(adaptive, prose) == 0.75 and dense_share(adaptive, part) == 0.25
    assert order(adaptive, prose) == order(Fusion(FusionMethod.CONVEX, dense_weight=0.75), prose)
    assert order(adaptive, part) == order(Fusion(FusionMethod.CONVEX, dense_weight=0.25), part)
    # By hand: a = 0.75 * 1 + 0.25 * 0, c = 0.75 * 0 + 0.25 * 1; the lookup mirrors them.
    assert order(adaptive, prose)[0] == ("a", 0.75) and order(adaptive, part)[0] == ("c", 0.75)
    # A convex fusion keeps its weight whatever the query is.
    assert dense_share(Fusion(FusionMethod.CONVEX, dense_weight=0.75), part) == 0.75


def test_the_default_fusion_is_adaptive_with_weaviates_alpha() -> None:
    assert Fusion() == Fusion(FusionMethod.ADAPTIVE, rrf_k=60, dense_weight=0.75)
    assert Fusion.of(CollectionSpec(model="default")) == Fusion()


@pytest.mark.parametrize("bad", [{"rrf_k": 0}, {"dense_weight": 1.5}, {"dense_weight": -0.1}])
def test_bad_fusion_parameters_are_named(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(bad))):
        Fusion(**bad)  # type: ignore[arg-type]


ids = st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10)


@given(ids, ids, st.integers(1, 100), st.integers(1, 12))
def test_fused_lists_are_unique_sorted_and_keep_each_legs_order(dense_ids, lexical_ids, rrf_k, k) -> None:  # type: ignore[no-untyped-def]
    dense = hits("dense", *((key, 1.0 - i / 10) for i, key in enumerate(dense_ids)))
    lexical = hits("lexical", *((key, 10.0 - i) for i, key in enumerate(lexical_ids)))
    fused = fuse(dense, lexical, Fusion(FusionMethod.RRF, rrf_k=rrf_k), k, query="q")
    keys = [h.external_id for h in fused]
    assert len(keys) == len(set(keys)) == min(k, len(set(dense_ids) | set(lexical_ids)))
    assert all(fused[i].score >= fused[i + 1].score for i in range(len(fused) - 1))
    # Documents only one leg found keep that leg's order.
    only_dense = [key for key in keys if key not in lexical_ids]
    assert only_dense == [key for key in dense_ids if key in only_dense]
