"""Pieces shared by the HTTP/1.1 and HTTP/2 engines."""
from __future__ import annotations

import asyncio
import io
from typing import Any, Callable, Optional

from .._errors import error
from .._runtime.blocking import run_blocking
from .._runtime.callbacks import CallbackQueue, invoke
from .body import _raw, read_into

BODY_CHUNK = 256 * 1024


class Dispatcher:
    """Delivers stream events to the public objects.

    Sync connections post them, in order, to a CallbackQueue (user callbacks never run
    on the loop thread).  aio connections on the caller's loop deliver them inline: the
    receivers there only feed asyncio futures and queues."""

    __slots__ = ("post",)

    def __init__(self, inline: bool = False) -> None:
        if inline:
            self.post: Callable[..., None] = _call_inline
        else:
            self.post = CallbackQueue().post


def _call_inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    invoke(fn, *args, **kwargs)


def in_memory(stream: Any) -> bool:
    return isinstance(_raw(stream), (io.BytesIO,))


def _read_held(holder: list) -> Optional[int]:
    return read_into(holder[0], holder[1])


async def _read_off_loop(stream: Any, buf: memoryview) -> Optional[int]:
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


def closed_error(exc: Optional[BaseException] = None) -> BaseException:
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
