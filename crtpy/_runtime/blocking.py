"""Blocking work (file I/O, hashing large buffers) off the event-loop thread."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from . import fork
from .callbacks import WorkerPool

T = TypeVar("T")

_pool = WorkerPool("crtpy-io", max_workers=16)


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on an I/O worker thread and return its result to the loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        ok: bool
        result: T | BaseException
        try:
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the awaiting coroutine
            ok, result = False, exc
        else:
            ok, result = True, value
        try:
            loop.call_soon_threadsafe(_settle, fut, ok, result)
        except RuntimeError:
            pass  # the loop closed while we worked; nobody is waiting any more

    _pool.submit(work)
    return await fut


def retire_idle_workers() -> None:
    _pool.retire_idle()


@fork.on_fork_child
def _new_pool_in_child() -> None:
    global _pool
    _pool = WorkerPool("crtpy-io", max_workers=16)
