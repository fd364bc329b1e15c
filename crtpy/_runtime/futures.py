"""Futures handed to users, and the bridge from coroutines on a loop thread to them."""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

from .callbacks import dispatch, invoke


class CrtFuture(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` whose done-callbacks never run on an event-loop
    thread: callbacks added before completion run on a callback worker, so they may
    block (even on other crtpy futures) without stalling the loop."""

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        if self.done():
            invoke(fn, self)
            return
        super().add_done_callback(lambda f: dispatch(fn, f))

    def add_done_callback_inline(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        """For crtpy's own code: run ``fn`` in the thread that completes the future."""
        super().add_done_callback(fn)

    def try_set_result(self, result: Any) -> bool:
        """Set the result unless the future is already done (e.g. cancelled)."""
        try:
            self.set_result(result)
            return True
        except concurrent.futures.InvalidStateError:
            return False

    def try_set_exception(self, exc: BaseException) -> bool:
        try:
            self.set_exception(exc)
            return True
        except concurrent.futures.InvalidStateError:
            return False


def completed(result: Any = None) -> CrtFuture:
    fut = CrtFuture()
    fut.set_result(result)
    return fut


def failed(exc: BaseException) -> CrtFuture:
    fut = CrtFuture()
    fut.set_exception(exc)
    return fut


def run_coroutine(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                  future: CrtFuture | None = None) -> CrtFuture:
    """Schedule ``coro`` on ``loop`` (from any thread) and return a CrtFuture for it.
    Cancelling the returned future cancels the task."""
    fut = future if future is not None else CrtFuture()

    def start() -> None:
        if fut.cancelled():
            coro.close()
            return
        task = loop.create_task(coro)

        def task_done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                fut.cancel()
            else:
                exc = t.exception()
                if exc is not None:
                    fut.try_set_exception(exc)
                else:
                    fut.try_set_result(t.result())

        task.add_done_callback(task_done)

        def future_done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled() and not task.done():
                loop.call_soon_threadsafe(task.cancel)

        fut.add_done_callback_inline(future_done)

    if _running_loop() is loop:
        start()
    else:
        loop.call_soon_threadsafe(start)
    return fut


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
