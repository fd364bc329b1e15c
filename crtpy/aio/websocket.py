"""asyncio WebSocket client over :mod:`crtpy.websocket` (a crtpy extension).

::

    async with await connect(host="127.0.0.1", port=port) as ws:
        await ws.send("hello")
        async for frame in ws:            # every received frame, in order
            if frame.opcode == Opcode.TEXT:
                print(frame.payload.decode())

Frames are delivered whole (a fragmented message arrives as its frames, ``fin`` False
on all but the last).  Control frames (PING, PONG, CLOSE) are delivered too; PINGs are
answered automatically and CLOSE is handled by the connection.

Flow control: the connection runs with a managed read window of ``read_window`` bytes
(1 MiB by default).  Payload bytes of data frames count against it until the reader
takes the frame from the iterator, so a reader that stops reading stops the socket
from being read rather than letting frames pile up in memory.  A single frame larger
than the window is still received whole (the window grows for it, once).
"""
from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Any

from .. import websocket as _ws
from ..http import HttpProxyOptions, HttpRequest
from ..websocket import (
    OnConnectionSetupData,
    OnConnectionShutdownData,
    OnIncomingFrameBeginData,
    OnIncomingFrameCompleteData,
    OnIncomingFramePayloadData,
    OnSendFrameCompleteData,
    Opcode,
    WebSocket,
)
from ._bridge import AsyncStream, LoopFuture

__all__ = ["AioWebSocket", "Frame", "Opcode", "connect"]

_DEFAULT_WINDOW = 1 << 20


@dataclass
class Frame:
    """One received frame."""

    opcode: Opcode
    """The frame's opcode."""
    payload: bytes
    """Its whole payload."""
    fin: bool
    """False for a fragment that CONTINUATION frames continue."""

    def is_data_frame(self) -> bool:
        """True for TEXT, BINARY and CONTINUATION frames."""
        return self.opcode.is_data_frame()

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8")


class _Receiver:
    """The connection's callbacks (run in order on a crtpy callback thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, window: int) -> None:
        self.loop = loop
        self.window = window
        self._grant = 0  # extra window opened for the frame being received
        self._grants: collections.deque[int] = collections.deque()  # per data frame queued
        self.lock = threading.Lock()
        self.websocket: WebSocket | None = None
        self.abandoned = False
        self.setup: LoopFuture[OnConnectionSetupData] = LoopFuture(loop)
        self.shutdown: LoopFuture[BaseException | None] = LoopFuture(loop)
        self.frames: AsyncStream[Frame] = AsyncStream(1 << 30, on_consume=self._consumed)
        self._parts: list[bytes] = []

    # -- from crtpy's callback thread ------------------------------------------------------
    def on_setup(self, data: OnConnectionSetupData) -> None:
        ws = data.websocket
        with self.lock:
            if ws is not None and self.abandoned:
                ws.close()
                return
            self.websocket = ws
        if data.exception is not None:
            self.setup.set_exception(data.exception)
            self.frames.end_threadsafe()
        else:
            self.setup.set_result(data)

    def on_shutdown(self, data: OnConnectionShutdownData) -> None:
        self.shutdown.set_result(data.exception)
        self.frames.end_threadsafe()

    def on_begin(self, data: OnIncomingFrameBeginData) -> None:
        self._parts = []
        frame = data.frame
        self._grant = 0
        if frame.is_data_frame() and frame.payload_length > self.window:
            # A frame larger than the whole window could never arrive: open the window by
            # the excess for this frame only (taken back when the reader takes it).
            self._grant = frame.payload_length - self.window
            with self.lock:
                ws = self.websocket
            if ws is not None:
                ws.increment_read_window(self._grant)

    def on_payload(self, data: OnIncomingFramePayloadData) -> None:
        self._parts.append(data.data)

    def on_complete(self, data: OnIncomingFrameCompleteData) -> None:
        parts, self._parts = self._parts, []
        if data.exception is not None:
            return  # a broken frame: the connection is ending and says why
        f = data.frame
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        if f.is_data_frame():
            self._grants.append(self._grant)
        self.frames.push_threadsafe(Frame(f.opcode, payload, f.fin))

    # -- on the loop -----------------------------------------------------------------------
    def _consumed(self, frame: Frame) -> None:
        if not frame.is_data_frame():
            return
        credit = len(frame.payload) - self._grants.popleft()
        if credit > 0:
            with self.lock:
                ws = self.websocket
            if ws is not None:
                ws.increment_read_window(credit)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            ws, self.websocket = self.websocket, None
        if ws is not None:
            ws.close()


class AioWebSocket:
    """An open WebSocket connection for asyncio code; made by :func:`connect`.

    Iterate it (``async for frame in ws``) to receive :class:`Frame` objects until the
    connection ends.  :attr:`websocket` is the underlying :class:`crtpy.websocket.WebSocket`.
    """

    def __init__(self, receiver: _Receiver, setup: OnConnectionSetupData) -> None:
        self._rx = receiver
        assert setup.websocket is not None
        self.websocket: WebSocket = setup.websocket
        self.handshake_response_status: int | None = setup.handshake_response_status
        self.handshake_response_headers = setup.handshake_response_headers

    @property
    def frames(self) -> AsyncStream[Frame]:
        """The stream of received frames (what iterating this object reads)."""
        return self._rx.frames

    def __aiter__(self) -> AsyncStream[Frame]:
        return self._rx.frames

    async def receive(self) -> Frame:
        """The next frame; ``StopAsyncIteration`` once the connection has ended."""
        return await self._rx.frames.get()

    async def send_frame(self, opcode: Opcode, payload: str | bytes | bytearray | memoryview | None = None,
                         *, fin: bool = True) -> None:
        """Send one frame and return once it has been written to the socket (or raise
        why it could not be).  Cancelling the wait does not unsend the frame."""
        loop = asyncio.get_running_loop()
        done: LoopFuture[None] = LoopFuture(loop)

        def on_complete(data: OnSendFrameCompleteData) -> None:
            if data.exception is not None:
                done.set_exception(data.exception)
            else:
                done.set_result(None)

        self.websocket.send_frame(opcode, payload, fin=fin, on_complete=on_complete)
        await done

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a whole message: TEXT for a ``str``, BINARY otherwise."""
        opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
        await self.send_frame(opcode, message)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a PING (its PONG arrives as a frame)."""
        await self.send_frame(Opcode.PING, payload)

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._rx.shutdown.future.done()

    async def wait_closed(self) -> BaseException | None:
        """Wait for the end of the connection; returns why it ended (None after a
        local :meth:`close`)."""
        return await asyncio.shield(self._rx.shutdown.future)

    async def close(self) -> BaseException | None:
        """Close the connection (CLOSE frame, then the socket) and wait until it has
        ended.  Returns what :meth:`wait_closed` returns."""
        self.websocket.close()
        return await self.wait_closed()

    async def __aenter__(self) -> AioWebSocket:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def connect(*,
                  host: str,
                  port: int | None = None,
                  handshake_request: HttpRequest | None = None,
                  path: str = "/",
                  bootstrap: Any = None,
                  socket_options: Any = None,
                  tls_connection_options: Any = None,
                  proxy_options: HttpProxyOptions | None = None,
                  read_window: int = _DEFAULT_WINDOW) -> AioWebSocket:
    """Open a WebSocket connection from the running loop.

    Arguments as for :func:`crtpy.websocket.connect`, without the callbacks;
    ``handshake_request`` defaults to ``create_handshake_request(host=host, path=path)``.
    ``read_window`` bounds the bytes of received data frames held unread (see the module
    documentation).  Raises the connection's error (an ``AwsCrtError``) if it fails.
    Cancelling the call closes the connection if it is made after all.
    """
    if not isinstance(read_window, int) or isinstance(read_window, bool) or read_window < 1:
        raise ValueError("read_window must be a positive int")
    if handshake_request is None:
        handshake_request = _ws.create_handshake_request(host=host, path=path)
    rx = _Receiver(asyncio.get_running_loop(), read_window)
    _ws.connect(host=host, port=port, handshake_request=handshake_request, bootstrap=bootstrap,
                socket_options=socket_options, tls_connection_options=tls_connection_options,
                proxy_options=proxy_options, manage_read_window=True, initial_read_window=read_window,
                on_connection_setup=rx.on_setup, on_connection_shutdown=rx.on_shutdown,
                on_incoming_frame_begin=rx.on_begin, on_incoming_frame_payload=rx.on_payload,
                on_incoming_frame_complete=rx.on_complete)
    try:
        setup = await rx.setup
    except asyncio.CancelledError:
        rx.abandon()
        raise
    return AioWebSocket(rx, setup)
