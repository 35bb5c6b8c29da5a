"""The installed version of Albatross, the one answer ``albatross --version`` and the HTTP API's
OpenAPI document both give. Here, in the lowest package, so that every package can ask it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "albatross"
NOT_INSTALLED = "unknown (not installed)"


def installed_version() -> str:
    """The installed distribution's version; ``NOT_INSTALLED`` when run from a checkout that was
    never installed (``pip install -e .`` fixes that)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return NOT_INSTALLED
