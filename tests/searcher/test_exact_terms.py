"""The exact-term detector: which queries the adaptive fusion hands to the lexical side."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from searcher.exact_terms import is_exact_term_lookup, is_identifier


@pytest.mark.parametrize(
    "query",
    [
        "AB-1234-C",
        "owls QX-4471-B",
        "what does error 0x80070005 mean",
        "ORA-00942 table or view does not exist",
        "E1234",
        "rtx3080 price",
        "covid-19 symptoms",
        "set max_length in the spec",
        "ERR_TIMEOUT",
        "python v3.12 release",
        "1234-C",
    ],
)
def test_identifiers_make_a_lookup(query: str) -> None:
    assert is_exact_term_lookup(query)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "which owls hunt by day",
        "what is the population of france in 2008",
        "a well-known treaty",
        "1st amendment rights",
        "music of the 1990s",
        "is 100mg of caffeine a lot",
        "how does a 401k work",
        "1990-2000 recession",
        "3.5mm jack",
        "e.g. u.s. history",
        "naïve café",
    ],
)
def test_prose_numbers_and_quantities_are_not_lookups(query: str) -> None:
    assert not is_exact_term_lookup(query)


def test_a_token_is_judged_whole() -> None:
    assert is_identifier("AB-1234-C") and is_identifier("x_y")
    assert not is_identifier("AB") and not is_identifier("1234") and not is_identifier("22nd")


@given(st.text(alphabet=st.characters(categories=("L", "Zs", "P")), max_size=40))
def test_text_without_digits_or_underscores_is_never_a_lookup(text: str) -> None:
    assert not is_exact_term_lookup(text.replace("_", " "))


@given(st.text(max_size=40), st.text(max_size=40))
def test_adding_an_identifier_makes_any_query_a_lookup(before: str, after: str) -> None:
    assert is_exact_term_lookup(f"{before} QX-4471-B {after}")
