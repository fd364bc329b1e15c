"""The asyncio protocol under every HTTP connection.

``ConnProtocol`` is a ``BufferedProtocol``: the transport reads straight into one
preallocated buffer, and each filled slice is handed (as a memoryview, no copy) to the
current *handler*: the proxy CONNECT reader first, then the HTTP/1.1 or HTTP/2 engine.
Handlers must consume the view before returning; it is overwritten by the next read.
"""
from __future__ import annotations

import asyncio
from typing import Any, cast

DEFAULT_READ_BUFFER = 1024 * 1024
_START_READ = 256 * 1024


class _RawProtocol(asyncio.Protocol):
    """Stand-in protocol while a large body streams: the transport hands over the
    ``bytes`` it read, and those go to the user as they are (no copy out of a shared
    buffer).  Everything else is forwarded to the ConnProtocol."""

    def __init__(self, owner: ConnProtocol) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        h = self.owner.handler
        if h is not None:
            h.raw_data(data)

    def eof_received(self) -> bool | None:
        return self.owner.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()


class ConnProtocol(asyncio.BufferedProtocol):
    def __init__(self, buffer_size: int | None = None) -> None:
        size = max(4096, buffer_size or DEFAULT_READ_BUFFER)
        self._buf = bytearray(size)
        self._mv = memoryview(self._buf)
        # reads start with a 256 KiB window of the buffer, which grows while reads fill it
        # (bulk transfers) and shrinks back when they no longer do
        self._cur = min(size, _START_READ)
        self._view = self._mv[:self._cur]
        self.transport: asyncio.Transport | None = None
        self.handler: Any = None
        self._pending: list[bytes] = []
        self._eof = False
        self.lost = False
        self.lost_exc: BaseException | None = None
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    # -- asyncio callbacks ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection: asyncio passes a Transport here.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        h = self.handler
        if h is None:
            self._pending.append(bytes(self._mv[:nbytes]))
        else:
            h.data_received(self._mv[:nbytes])
        cur = self._cur
        if nbytes == cur and cur < len(self._buf):
            self._cur = min(len(self._buf), cur * 2)
            self._view = self._mv[:self._cur]
        elif nbytes < cur // 8 and cur > _START_READ:
            self._cur = max(_START_READ, cur // 2)
            self._view = self._mv[:self._cur]

    def data_received(self, data: bytes) -> None:  # used by transports without buffer support
        h = self.handler
        if h is None:
            self._pending.append(bytes(data))
        else:
            h.data_received(memoryview(data))

    def eof_received(self) -> bool | None:
        self._eof = True
        h = self.handler
        if h is not None:
            h.eof_received()
        return None  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.lost_exc = exc
        self._wake_drain(exc)
        h = self.handler
        if h is not None:
            h.connection_lost(exc)
        # nothing is read any more: free the buffer now rather than when the cycle
        # through the handler is collected
        self._buf = bytearray()
        self._mv = self._view = memoryview(self._buf)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain(None)

    # -- helpers ----------------------------------------------------------------------
    def _wake_drain(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if not self.write_paused or self.lost:
            return
        fut = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(fut)
        await fut

    def set_handler(self, handler: Any) -> None:
        """Route received bytes to ``handler``, first replaying those that arrived while
        there was no handler."""
        self.handler = handler
        while self._pending and self.handler is handler and handler is not None:
            handler.data_received(memoryview(self._pending.pop(0)))
        if handler is None or self.handler is not handler:
            return
        if self.lost:
            handler.connection_lost(self.lost_exc)
        elif self._eof:
            handler.eof_received()

    def enter_raw(self) -> None:
        """Receive plain ``bytes`` (no shared buffer) until :meth:`leave_raw`."""
        if self.transport is not None and not self.lost:
            self.transport.set_protocol(_RawProtocol(self))

    def leave_raw(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.set_protocol(self)

    def unread(self, data: bytes) -> None:
        """Give back bytes a handler did not consume; the next handler gets them first."""
        if data:
            self._pending.insert(0, bytes(data))

    def take_pending(self) -> bytes:
        data = b"".join(self._pending)
        self._pending = []
        return data
