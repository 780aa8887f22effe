"""Measure whether an awaited call leaves the event loop free to run other tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def ticks_during(call: Awaitable[T]) -> tuple[T, int]:
    """Await ``call`` while a task ticks every 10 ms; return its result and the tick count."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await call
    finally:
        task.cancel()
    return result, ticks
