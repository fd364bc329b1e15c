"""Helpers for the crtpy.aio tests."""
from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["Ticker", "on_each_event_loop", "take", "timeout"]


if sys.version_info >= (3, 11):
    timeout = asyncio.timeout
else:
    @contextlib.asynccontextmanager
    async def timeout(delay: float) -> AsyncIterator[None]:
        """``asyncio.timeout`` for Python 3.10: cancel the block after ``delay`` seconds
        and raise TimeoutError."""
        task = asyncio.current_task()
        assert task is not None
        fired = False

        def fire() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()


class Ticker:
    """``async with Ticker() as t:`` counts, in ``t.ticks``, how often a 1 ms timer task got
    to run on the caller's loop: a crtpy await that blocked the loop would stop the count."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.001)

    async def __aenter__(self) -> Ticker:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def on_each_event_loop(make: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``make()`` to completion on a new asyncio loop, then on a new uvloop loop when
    uvloop is installed; return the results."""
    import importlib.util

    factories: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        factories.append(uvloop.new_event_loop)
    results = []
    for factory in factories:
        loop = factory()
        try:
            results.append(loop.run_until_complete(make()))
        finally:
            loop.close()
    return results


async def take(stream: Any, n: int, within: float = 10.0) -> list[Any]:
    """The next ``n`` items of the async iterator ``stream``, within ``within`` seconds."""
    out: list[Any] = []
    async with timeout(within):
        async for item in stream:
            out.append(item)
            if len(out) == n:
                break
    return out
