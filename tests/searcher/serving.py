"""A real server in a background event loop, for tests that speak to it with the sync client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from indexer.config import AppConfig, ServerConfig, StoreConfig
from searcher.server import RunningServer, create_server

T = TypeVar("T")


class ServerThread:
    """An asyncio loop in a thread serving while the test (the client) blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def served_app(
    data_dir: Path, model: Path, server: ServerConfig | None = None, *, db_url: str | None = None
) -> AppConfig:
    """A test server's configuration: its own data folder (and database, with ``db_url``; else
    SQLite in the folder), ``model`` as every collection's default, and ``server``."""
    return AppConfig(
        store=StoreConfig(data_dir=data_dir, db_url=db_url),
        server=server or ServerConfig(),
        default_model=model,
    )


@contextmanager
def running_server(app: AppConfig) -> Iterator[RunningServer]:
    """``create_server(app, port=0)`` in a background loop; stopped (and snapshotted) on exit."""
    thread = ServerThread()
    try:
        running = thread.run(create_server(app, port=0))
        try:
            yield running
        finally:
            thread.run(running.stop(grace_s=1.0))
    finally:
        thread.close()
