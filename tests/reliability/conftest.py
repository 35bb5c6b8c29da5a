"""Figures the reliability tests report (kills survived, documents checked, inputs tried), summed
over the session and printed at the end of the run."""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES = pytest.StashKey[Counter[str]]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Counter[str]:
    return request.config.stash.setdefault(FIGURES, Counter())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, None)
    if not figures:
        return
    terminalreporter.write_sep("-", "reliability figures")
    for name, value in figures.items():
        terminalreporter.write_line(f"{name}: {value}")
