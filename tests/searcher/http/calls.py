"""A plain HTTP client for the tests (the standard library's, so nothing here shares code with the
server), and a server with its HTTP API on loopback port 0."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from multidict import CIMultiDict

from indexer.config import AppConfig
from searcher.server import RunningServer
from tests.searcher.serving import running_server


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


def call(
    method: str,
    url: str,
    body: bytes | str | dict[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 60,
) -> Answer:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    data = data.encode() if isinstance(data, str) else data
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Answer(response.status, CIMultiDict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, CIMultiDict(error.headers.items()), error.read())


@contextmanager
def http_server(app: AppConfig) -> Iterator[RunningServer]:
    """``running_server`` with the HTTP API on too, gRPC and HTTP both on free loopback ports."""
    with running_server(replace(app, server=replace(app.server, host="127.0.0.1", http_port=0))) as running:
        yield running
