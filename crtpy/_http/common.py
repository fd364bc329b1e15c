"""Pieces shared by the HTTP/1.1 and HTTP/2 engines."""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import error
from .._runtime import callbacks as _callbacks
from .._runtime.blocking import run_blocking
from .._runtime.callbacks import invoke
from .._runtime.futures import CrtFuture
from .body import _raw, read_into

BODY_CHUNK = 256 * 1024
_FINISHED = concurrent.futures._base.FINISHED
_DONE_STATES = frozenset((concurrent.futures._base.CANCELLED, concurrent.futures._base.CANCELLED_AND_NOTIFIED,
                          concurrent.futures._base.FINISHED))


class CallbackRunner:
    """Runs one connection's user callbacks serially and in order, never on the loop.

    Like ``CallbackQueue``, except that a thread blocked in ``completion_future.result()``
    of one of the connection's streams runs the pending callbacks itself instead of
    waiting for a pool worker to wake up and run them: one thread hand-off per response
    instead of two.  With nobody waiting, callbacks go to the shared callback pool."""

    __slots__ = ("_cond", "_draining", "_held", "_hold", "_items", "_lock", "_scheduled", "_sleepers", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = collections.deque()
        self._draining = False
        self._scheduled = False
        self._waiters = 0  # threads that will run what is posted (see help_until, enter_reader)
        self._sleepers = 0  # those of them blocked on ``_cond``
        self._hold = 0
        self._held: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def hold(self) -> None:
        """Keep posts back until the matching :meth:`release`, which hands them over in
        one go: every callback of one read (say a response's head, body and completion)
        costs one lock round and at most one thread wake-up.  Only the posting thread
        (the connection's loop) calls these."""
        self._hold += 1

    def release(self) -> None:
        self._hold -= 1
        if self._hold or not self._held:
            return
        held, self._held = self._held, []
        with self._lock:
            self._items.extend(held)
            to_pool = self._wake_locked()
        if to_pool:
            _callbacks._callback_pool.submit(self._pool_drain)

    def post(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self._hold:
            self._held.append((fn, args, kwargs))
            return
        with self._lock:
            self._items.append((fn, args, kwargs))
            to_pool = self._wake_locked()
        if to_pool:
            _callbacks._callback_pool.submit(self._pool_drain)

    def _wake_locked(self) -> bool:
        """(holding ``_lock``, after adding items) Wake a thread waiting for its stream,
        which then runs them; else say whether a pool worker must be started."""
        if self._waiters:
            if self._sleepers:
                self._cond.notify()
            return False
        if self._draining or self._scheduled:
            return False
        self._scheduled = True
        return True

    def wake(self, _f: Any = None) -> None:
        with self._lock:
            if self._sleepers:
                self._cond.notify_all()

    def _pool_drain(self) -> None:
        with self._lock:
            self._scheduled = False
        self.drain()

    def drain(self) -> None:
        """Run pending callbacks in this thread unless another thread is running them."""
        if not self._items:
            return  # (callers look again under the lock before they sleep)
        while True:
            with self._lock:
                if self._draining or not self._items:
                    return
                self._draining = True
                batch, self._items = self._items, collections.deque()
            try:
                for fn, args, kwargs in batch:
                    invoke(fn, *args, **kwargs)
            finally:
                with self._lock:
                    self._draining = False

    def help_until(self, fut: concurrent.futures.Future[Any], timeout: float | None,
                   reader: Any = None) -> None:
        """Run callbacks in this thread until ``fut`` is done or ``timeout`` passes.
        ``reader`` (an engine stream, or None) may first read the response in this
        thread (``reader.read_here(runner, deadline)``, see ``H1Connection.caller_read``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if reader is not None:
            reader.read_here(self, deadline)
        while True:
            self.drain()
            if fut.done():
                return
            with self._lock:
                if self._items and not self._draining:
                    continue
                if fut.done():
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._hand_off_locked()
                    return
                self._waiters += 1
                self._sleepers += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._sleepers -= 1
                    self._waiters -= 1
                    if not self._waiters:
                        self._hand_off_locked(after_wait=True)

    def enter_reader(self) -> None:
        """This thread reads a response itself and runs what it posts (see
        :meth:`leave_reader`): posts meanwhile start no pool worker."""
        with self._lock:
            self._waiters += 1

    def leave_reader(self) -> None:
        with self._lock:
            self._waiters -= 1
            if not self._waiters:
                self._hand_off_locked(after_wait=True)

    def _hand_off_locked(self, after_wait: bool = False) -> None:
        # called with the lock held: leftover callbacks go to the pool
        if after_wait and self._items:
            return  # this thread is about to drain them itself
        if self._items and not self._draining and not self._scheduled and not self._waiters:
            self._scheduled = True
            _callbacks._callback_pool.submit(self._pool_drain)


class HelpingFuture(CrtFuture):
    """completion_future of streams: waiting on it runs the connection's pending callbacks
    in the waiting thread (see :class:`CallbackRunner`)."""

    _runner: CallbackRunner | None = None
    # an engine stream whose response the waiting thread may read itself (see help_until)
    _reader: Any = None

    def done(self) -> bool:
        # the state is one attribute, replaced whole: readable without the condition's lock
        return self._state in _DONE_STATES

    def _invoke_callbacks(self) -> None:
        # (concurrent.futures calls this once the future is done) first wake the threads
        # that wait for the runner, then run the done-callbacks
        runner = self._runner
        if runner is not None:
            runner.wake()
        super()._invoke_callbacks()  # type: ignore[misc]

    def result(self, timeout: float | None = None) -> Any:
        runner = self._runner
        if runner is not None and not self.done():
            runner.help_until(self, timeout, self._reader)
            if not self.done():
                # leftover work was handed to the pool; keep the normal timeout contract
                return super().result(0)
        if self._state == _FINISHED and self._exception is None:
            return self._result  # the common case, without the condition's lock
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        runner = self._runner
        if runner is not None and not self.done():
            runner.help_until(self, timeout, self._reader)
            if not self.done():
                return super().exception(0)
        return super().exception(timeout)


def helping_future(dispatcher: Dispatcher) -> CrtFuture:
    runner = dispatcher.runner
    if runner is None:
        return CrtFuture()
    fut = HelpingFuture()
    fut._runner = runner
    return fut


class Dispatcher:
    """Delivers stream events to the public objects.

    Sync connections post them, in order, to a CallbackRunner (user callbacks never run
    on the loop thread).  aio connections on the caller's loop deliver them inline: the
    receivers there only feed asyncio futures and queues."""

    __slots__ = ("hold", "post", "release", "runner")

    def __init__(self, inline: bool = False) -> None:
        self.runner: CallbackRunner | None = None
        if inline:
            self.post: Callable[..., None] = _call_inline
            self.hold: Callable[[], None] = _nothing
            self.release: Callable[[], None] = _nothing
        else:
            self.runner = CallbackRunner()
            self.post = self.runner.post
            self.hold = self.runner.hold
            self.release = self.runner.release


def _nothing() -> None:
    pass


def _call_inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    invoke(fn, *args, **kwargs)


def in_memory(stream: Any) -> bool:
    return isinstance(_raw(stream), (io.BytesIO,))


def _read_held(holder: list[Any]) -> int | None:
    return read_into(holder[0], holder[1])


async def _read_off_loop(stream: Any, buf: memoryview) -> int | None:
    # An idle I/O worker keeps a reference to its last work item, so hand it a holder
    # that is emptied afterwards rather than the stream itself.
    holder = [stream, buf]
    try:
        return await run_blocking(_read_held, holder)
    finally:
        holder.clear()


async def read_chunk(stream: Any, buf: memoryview) -> int:
    """Read the next piece of a request body into ``buf``; 0 at the end.  In-memory
    streams are read inline, others on an I/O worker thread."""
    if in_memory(stream):
        n = read_into(stream, buf)
    else:
        n = await _read_off_loop(stream, buf)
    while n is None:  # a non-blocking stream with nothing yet
        await asyncio.sleep(0.001)
        n = read_into(stream, buf) if in_memory(stream) else await _read_off_loop(stream, buf)
    return n


def closed_error(exc: BaseException | None = None) -> BaseException:
    if exc is not None and getattr(exc, "name", None):
        return exc
    return error("AWS_ERROR_HTTP_CONNECTION_CLOSED")


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``: inline when already there, else thread-safely."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
    else:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nothing left to do there
            from .._errors import error

            raise error("AWS_IO_EVENT_LOOP_SHUTDOWN") from None
