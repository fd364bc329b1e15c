"""asyncio front-end of :mod:`crtpy.eventstream.rpc` (a crtpy extension).

::

    conn = await connect(host_name="127.0.0.1", port=port)
    await conn.send_protocol_message(message_type=MessageType.CONNECT,
                                     headers=[Header.from_string(":version", "0.1.0")])
    ack = await conn.protocol_messages.get()         # CONNECT_ACK
    stream = conn.new_stream()
    await stream.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE,
                          payload=b"hi")
    async for message in stream:                     # until the stream closes
        ...
    await conn.close()

Messages are queued for the reader on the caller's loop.  The protocol has no flow
control, so each queue is bounded by ``max_queued`` messages with the overflow policy of
:class:`crtpy.aio.mqtt5.AioClient.messages` (oldest dropped by default, counted in the
stream's ``dropped``).  Closing a continuation's stream (``aclose()``, or leaving
``async with stream``) before the server ended it sends TERMINATE_STREAM.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..eventstream import Header
from ..eventstream.rpc import (
    ClientConnection,
    ClientConnectionHandler,
    ClientContinuation,
    ClientContinuationHandler,
    MessageFlag,
    MessageType,
)
from ._bridge import AsyncStream, LoopFuture, OverflowPolicy, wait_future

__all__ = ["AioClientConnection", "AioClientContinuation", "Message", "connect"]


def _untyped(obj: Any) -> Any:
    """For the methods of crtpy.eventstream.rpc that carry no annotations (as in the reference)."""
    return obj


@dataclass
class Message:
    """One received event-stream RPC message."""

    headers: list[Header]
    """All its headers."""
    payload: bytes
    """Its payload."""
    message_type: MessageType
    """Its type (an int if the type is unknown)."""
    flags: int
    """Its :class:`~crtpy.eventstream.rpc.MessageFlag` bits."""

    @property
    def terminates_stream(self) -> bool:
        """True if the TERMINATE_STREAM flag is set."""
        return bool(self.flags & MessageFlag.TERMINATE_STREAM)


class _ConnHandler(ClientConnectionHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, overflow: OverflowPolicy) -> None:
        self.lock = threading.Lock()
        self.connection: ClientConnection | None = None
        self.abandoned = False
        self.shutdown: LoopFuture[BaseException | None] = LoopFuture(loop)
        self.setup: LoopFuture[ClientConnection] = LoopFuture(loop)
        self.messages: AsyncStream[Message] = AsyncStream(maxsize, overflow)

    def on_connection_setup(self, connection: Any, error: Any, **kwargs: Any) -> None:
        with self.lock:
            self.connection = connection
            abandoned = self.abandoned
        if connection is not None and abandoned:
            _untyped(connection).close()
        if error is not None:
            self.setup.set_exception(error)
            self.messages.end_threadsafe()
        else:
            self.setup.set_result(connection)

    def on_connection_shutdown(self, reason: Any, **kwargs: Any) -> None:
        self.shutdown.set_result(reason)
        self.messages.end_threadsafe()

    def on_protocol_message(self, headers: Any, payload: bytes, message_type: Any, flags: int,
                            **kwargs: Any) -> None:
        self.messages.push_threadsafe(Message(list(headers), payload, message_type, flags))

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            connection = self.connection
        if connection is not None:
            _untyped(connection).close()


class _StreamHandler(ClientContinuationHandler):
    def __init__(self, stream: AsyncStream[Message], closed: LoopFuture[None]) -> None:
        self.stream = stream
        self.closed = closed

    def on_continuation_message(self, headers: Any, payload: bytes, message_type: Any, flags: int,
                                **kwargs: Any) -> None:
        self.stream.push_threadsafe(Message(list(headers), payload, message_type, flags))

    def on_continuation_closed(self, **kwargs: Any) -> None:
        self.closed.set_result(None)
        self.stream.end_threadsafe()


class AioClientContinuation:
    """One stream of an :class:`AioClientConnection`; iterate it for its messages (the
    iteration ends when the stream closes).  :attr:`continuation` is the underlying
    :class:`~crtpy.eventstream.rpc.ClientContinuation`."""

    def __init__(self, connection: ClientConnection, maxsize: int, overflow: OverflowPolicy) -> None:
        self._closed: LoopFuture[None] = LoopFuture()
        self.messages: AsyncStream[Message] = AsyncStream(maxsize, overflow, on_close=self._reader_left)
        self.continuation: ClientContinuation = connection.new_stream(
            _StreamHandler(self.messages, self._closed))

    def __aiter__(self) -> AsyncStream[Message]:
        return self.messages

    async def activate(self, *, operation: str, headers: Sequence[Header] | None = None,
                       payload: bytes | bytearray | None = None,
                       message_type: MessageType, flags: int | None = None) -> None:
        """Open the stream with its first message; returns once it is written."""
        await wait_future(self.continuation.activate(operation=operation, headers=headers,
                                                     payload=payload, message_type=message_type,
                                                     flags=flags))

    async def send_message(self, *, headers: Sequence[Header] | None = None,
                           payload: bytes | bytearray | None = None,
                           message_type: MessageType, flags: int | None = None) -> None:
        """Send a further message; returns once it is written."""
        await wait_future(self.continuation.send_message(headers=headers, payload=payload,
                                                         message_type=message_type, flags=flags))

    def is_closed(self) -> bool:
        return bool(_untyped(self.continuation).is_closed())

    async def wait_closed(self) -> None:
        """Wait until the stream has closed."""
        await asyncio.shield(self._closed.future)

    def _terminate(self) -> None:
        c = self.continuation
        if c._activated and not _untyped(c).is_closed():
            try:
                c.send_message(message_type=MessageType.APPLICATION_MESSAGE,
                               flags=MessageFlag.TERMINATE_STREAM)
            except Exception:  # noqa: BLE001, S110 - already closing: nothing to end
                pass

    def _reader_left(self) -> None:
        self._terminate()

    async def close(self) -> None:
        """End the stream (TERMINATE_STREAM if it is still open) and wait until closed;
        returns at once for a stream never activated."""
        self._terminate()
        if self.continuation._activated:
            await self.wait_closed()
        self.messages.close()

    async def __aenter__(self) -> AioClientContinuation:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AioClientConnection:
    """An event-stream RPC connection for asyncio code; made by :func:`connect`.

    :attr:`protocol_messages` yields the connection-level messages (CONNECT_ACK, PING,
    errors...) and ends when the connection shuts down.  :attr:`connection` is the
    underlying :class:`~crtpy.eventstream.rpc.ClientConnection`.
    """

    def __init__(self, handler: _ConnHandler, connection: ClientConnection,
                 maxsize: int, overflow: OverflowPolicy) -> None:
        self._handler = handler
        self.connection = connection
        self.protocol_messages: AsyncStream[Message] = handler.messages
        self._maxsize = maxsize
        self._overflow: OverflowPolicy = overflow

    async def send_protocol_message(self, *, headers: Sequence[Header] | None = None,
                                    payload: bytes | bytearray | None = None,
                                    message_type: MessageType, flags: int | None = None) -> None:
        """Send a connection-level message; returns once it is written."""
        await wait_future(self.connection.send_protocol_message(
            headers=headers, payload=payload, message_type=message_type, flags=flags))

    def new_stream(self) -> AioClientContinuation:
        """A new stream (nothing is sent until its ``activate``)."""
        return AioClientContinuation(self.connection, self._maxsize, self._overflow)

    def is_open(self) -> bool:
        return bool(_untyped(self.connection).is_open())

    async def wait_closed(self) -> BaseException | None:
        """Wait for the shutdown; returns why (None after :meth:`close`)."""
        return await asyncio.shield(self._handler.shutdown.future)

    async def close(self) -> BaseException | None:
        """Close the connection and wait for its shutdown."""
        _untyped(self.connection).close()
        return await self.wait_closed()

    async def __aenter__(self) -> AioClientConnection:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def connect(*, host_name: str, port: int, bootstrap: Any = None, socket_options: Any = None,
                  tls_connection_options: Any = None, max_queued: int = 10000,
                  overflow: OverflowPolicy = "drop_oldest") -> AioClientConnection:
    """Open an event-stream RPC connection from the running loop (arguments as for
    :meth:`crtpy.eventstream.rpc.ClientConnection.connect`).  Sending CONNECT is up to
    the caller.  Raises the connection's error on failure; cancelling the call closes
    the connection if it is made after all."""
    handler = _ConnHandler(asyncio.get_running_loop(), max_queued, overflow)
    # The handler's own outcome is awaited rather than the returned future, which is
    # left alone (completing a cancelled one would only be logged as an error).
    ClientConnection.connect(handler=handler, host_name=host_name, port=port,
                             bootstrap=bootstrap, socket_options=socket_options,
                             tls_connection_options=tls_connection_options)
    try:
        connection = await handler.setup
    except asyncio.CancelledError:
        handler.abandon()
        raise
    return AioClientConnection(handler, connection, max_queued, overflow)
