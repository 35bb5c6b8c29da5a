"""Blocking calls (SQL, FAISS, the encoder's forward pass) from the event loop, on an executor.

The asyncio server never runs them on the loop itself: a forward pass there would stall every
client (docs/ARCHITECTURE.md, "A query's way out").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


class BlockingCalls:
    """``await calls(func, *args)``: ``func(*args)`` on ``executor``, awaited from the loop."""

    def __init__(self, executor: Executor | None) -> None:
        self._executor = executor

    async def __call__(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
