"""The client's text searches all take the same options, declared once by ``SearchOptions``."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from searcher.client import AlbatrossClient, SearchOptions

TEXT_SEARCHES = (
    "search",
    "search_with_warnings",
    "search_allowing_partial",
    "search_batch",
    "search_batch_allowing_partial",
)


@pytest.mark.parametrize("method", TEXT_SEARCHES)
def test_every_text_search_takes_the_options_with_their_declared_defaults(method: str) -> None:
    parameters = inspect.signature(getattr(AlbatrossClient, method)).parameters
    for field in dataclasses.fields(SearchOptions):
        assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[field.name].default == field.default, f"{method}({field.name}=...)"


def test_the_options_are_a_frozen_record() -> None:
    options = SearchOptions(timeout=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout = 3.0  # type: ignore[misc]
