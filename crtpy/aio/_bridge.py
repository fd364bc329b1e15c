"""The one bridge from crtpy's threads to the caller's asyncio loop (private).

crtpy's synchronous API completes ``concurrent.futures.Future`` objects and runs user
callbacks on its callback worker threads.  The ``crtpy.aio`` modules turn both into
awaitables and async iterators on the loop that was running when the caller asked:

* :func:`wait_future` awaits a concurrent future (cancelling the awaiting task cancels
  that future, and whatever the caller passes as ``on_cancel``);
* :class:`LoopFuture` is a one-shot result that any thread may set;
* :class:`AsyncStream` is a bounded queue fed from any thread and read with
  ``async for`` on its loop;
* :class:`Hub` fans items out to the streams currently subscribed.

Results always reach the loop through ``loop.call_soon_threadsafe``: nothing here ever
blocks the loop, and nothing touches loop objects from another thread.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, Literal, TypeVar

from .._runtime.futures import CrtFuture

__all__ = ["AsyncStream", "Hub", "LoopFuture", "OverflowPolicy", "post", "wait_future"]

T = TypeVar("T")
_log = logging.getLogger("crtpy.aio")

OverflowPolicy = Literal["drop_oldest", "drop_newest"]


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """Run ``fn(*args)`` on ``loop`` soon, from any thread.  False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
        return True
    except RuntimeError:  # the loop was closed: nobody is left to tell
        return False


def _copy_outcome(src: concurrent.futures.Future[Any], dst: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
        return
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


async def wait_future(fut: concurrent.futures.Future[T],
                      on_cancel: Callable[[], None] | None = None) -> T:
    """Await a concurrent future from the running loop.

    If the awaiting task is cancelled, ``fut`` is cancelled too (so its result is
    dropped and nothing waits for it any more) and ``on_cancel()`` runs on the loop."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def done(f: concurrent.futures.Future[Any]) -> None:
        post(loop, _copy_outcome, f, waiter)

    if isinstance(fut, CrtFuture):
        fut.add_done_callback_inline(done)  # no hop through a callback worker
    else:
        fut.add_done_callback(done)
    try:
        return await waiter
    except asyncio.CancelledError:
        fut.cancel()
        if on_cancel is not None:
            on_cancel()
        raise


class LoopFuture(Generic[T]):
    """An asyncio future on ``loop`` that any thread may complete (first outcome wins)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.future: asyncio.Future[T] = self.loop.create_future()

    def set_result(self, value: T) -> None:
        post(self.loop, self._settle, value, None)

    def set_exception(self, exc: BaseException) -> None:
        post(self.loop, self._settle, None, exc)

    def _settle(self, value: Any, exc: BaseException | None) -> None:
        if self.future.done():
            return
        if exc is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(value)

    def __await__(self) -> Generator[Any, None, T]:
        return self.future.__await__()


class AsyncStream(Generic[T]):
    """A bounded queue written from any thread and read with ``async for`` on the loop
    that created it.

    When ``maxsize`` items are waiting, ``overflow`` decides: ``"drop_oldest"`` (the
    default) discards the oldest waiting item to make room, ``"drop_newest"`` discards
    the item arriving.  :attr:`dropped` counts discarded items.  ``on_consume(item)``
    runs on the loop as each item is handed to the reader (used for flow control);
    ``on_close()`` runs once when the stream is closed by its reader.
    """

    def __init__(self, maxsize: int = 1000, overflow: OverflowPolicy = "drop_oldest", *,
                 on_consume: Callable[[T], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError("maxsize must be a positive int")
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError("overflow must be 'drop_oldest' or 'drop_newest'")
        self.loop = asyncio.get_running_loop()
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._on_consume = on_consume
        self._on_close = on_close

    # -- producers (any thread) ----------------------------------------------------------
    def push_threadsafe(self, item: T) -> None:
        post(self.loop, self.push, item)

    def end_threadsafe(self, exc: BaseException | None = None) -> None:
        post(self.loop, self.end, exc)

    # -- on the loop -----------------------------------------------------------------------
    def push(self, item: T) -> None:
        if self._closed or self._ended:
            return
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self.overflow == "drop_newest":
                return
            self._items.popleft()
        self._items.append(item)
        self._wake()

    def end(self, exc: BaseException | None = None) -> None:
        """No more items: the reader gets those waiting, then the end (or ``exc``)."""
        if self._ended:
            return
        self._ended = True
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            if self._ended:
                exc, self._error = self._error, None
                if exc is not None:
                    raise exc
                raise StopAsyncIteration
            waiter = self.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if self._on_consume is not None:
            self._on_consume(item)
        return item

    async def get(self) -> T:
        """The next item (``StopAsyncIteration`` at the end)."""
        return await self.__anext__()

    def close(self) -> None:
        """Stop reading: drop waiting items, end iteration and unregister the stream."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._wake()
        cb, self._on_close = self._on_close, None
        if cb is not None:
            cb()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class Hub(Generic[T]):
    """The streams subscribed to one source of items (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[AsyncStream[T]] = []

    def subscribe(self, maxsize: int, overflow: OverflowPolicy) -> AsyncStream[T]:
        stream: AsyncStream[T] = AsyncStream(maxsize, overflow)
        stream._on_close = lambda: self._remove(stream)
        with self._lock:
            self._streams.append(stream)
        return stream

    def _remove(self, stream: AsyncStream[T]) -> None:
        with self._lock:
            try:
                self._streams.remove(stream)
            except ValueError:
                pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def publish(self, item: T) -> None:
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.push_threadsafe(item)

    def end_all(self, exc: BaseException | None = None) -> None:
        """End every subscribed stream (they unsubscribe as they end)."""
        with self._lock:
            streams, self._streams = self._streams, []
        for s in streams:
            s.end_threadsafe(exc)
