"""Keep-alive HTTP/1.1 connections for the S3 client's hot path.

One :class:`S3Connection` carries one exchange at a time.  The response is parsed by
``httptools``; body pieces go straight to a sink chosen by the caller (a part buffer,
a file writer), error bodies are collected.  :class:`ConnectionPool` keeps idle
connections per endpoint and bounds how many exist.
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import httptools

from .._errors import error

Buffer = Any
Headers = list[tuple[str, str]]

#: a connection that sends or receives nothing for this long is considered dead
DEFAULT_IDLE_TIMEOUT_SEC = 30.0
#: request bodies are written in slices of this size
WRITE_SLICE = 1024 * 1024


class ExchangeError(Exception):
    """Transport-level failure of one exchange (retryable)."""

    def __init__(self, crt_error: BaseException) -> None:
        super().__init__(str(crt_error))
        self.crt_error = crt_error


class Response:
    __slots__ = ("error_body", "headers", "status")

    def __init__(self, status: int, headers: Headers, error_body: bytes | None) -> None:
        self.status = status
        self.headers = headers
        self.error_body = error_body

    def header(self, name: str) -> str | None:
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


class S3Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; exchanges run one after another."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.open = False
        self.reusable = True
        self._parser: Any = httptools.HttpResponseParser(self)
        self._fut: asyncio.Future[Response] | None = None
        self._headers: Headers = []
        self._status = 0
        self._sink: Callable[[bytes], None] | None = None
        self._err_parts: list[bytes] = []
        self._ok = False
        self._head = False
        self._head_buf = bytearray()
        self._writable = asyncio.Event()
        self._writable.set()
        self.activity = 0
        self._lost_exc: BaseException | None = None

    # -- asyncio protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection: asyncio passes a Transport here.
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self.activity += 1
        if self._fut is None or self._fut.done():
            self.reusable = False  # unexpected bytes: never reuse
            return
        if self._head:
            self._head_buf += data
            end = self._head_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self._head_buf[:end + 4])
            if len(self._head_buf) > end + 4:
                self.reusable = False
            self._head_buf = bytearray()
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # noqa: BLE001 - malformed response
            self.reusable = False
            name = getattr(exc, "name", None) or getattr(getattr(exc, "__context__", None), "name", None)
            self._fail(error(name or "AWS_ERROR_HTTP_PROTOCOL_ERROR", f"bad HTTP response: {exc}"))
            return
        if self._head and self._status and self._fut is not None and not self._fut.done():
            self._parser = httptools.HttpResponseParser(self)
            self._complete()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.open = False
        self.reusable = False
        self._writable.set()
        self._fail(error("AWS_ERROR_HTTP_CONNECTION_CLOSED",
                         f"the server closed the connection{': ' + str(exc) if exc else ''}"))

    # -- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return
        self._status = status
        self._ok = 200 <= status < 300
        if not self._parser.should_keep_alive():
            self.reusable = False

    def on_body(self, body: bytes) -> None:
        if self._ok and self._sink is not None:
            self._sink(body)
        else:
            self._err_parts.append(body)

    def on_message_complete(self) -> None:
        if self._status:
            self._complete()

    # -- exchange ------------------------------------------------------------------------------
    def _complete(self) -> None:
        fut = self._fut
        if fut is None or fut.done():
            return
        body = b"".join(self._err_parts) if not self._ok or self._sink is None else None
        fut.set_result(Response(self._status, self._headers, body))

    def _fail(self, exc: BaseException) -> None:
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_exception(ExchangeError(exc))

    def close(self) -> None:
        self.open = False
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    async def exchange(self, head: bytes, body: Sequence[Buffer] | None, sink: Callable[[bytes], None] | None,
                       *, is_head: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SEC,
                       on_sent: Callable[[int], None] | None = None) -> Response:
        """Send ``head`` and the ``body`` pieces; 2xx body pieces go to ``sink``."""
        if not self.open or self.transport is None:
            raise ExchangeError(error("AWS_ERROR_HTTP_CONNECTION_CLOSED"))
        self._fut = self.loop.create_future()
        self._sink = sink
        self._err_parts = []
        self._status = 0
        self._ok = False
        self._head = is_head
        transport = self.transport
        try:
            transport.write(head)
            if body:
                await self._send_body(body, idle_timeout, on_sent)
            return await self._wait_response(idle_timeout)
        except BaseException:
            self.close()
            raise
        finally:
            self._sink = None
            fut = self._fut
            if fut.done():
                if not fut.cancelled():
                    fut.exception()  # mark a failure seen even when the body send ended first
            else:
                # nobody waits for this exchange any more (cancelled, timed out): a later
                # connection_lost must not leave an unretrieved exception behind
                fut.cancel()

    async def _send_body(self, body: Sequence[Buffer], idle_timeout: float,
                         on_sent: Callable[[int], None] | None) -> None:
        fut = self._fut
        assert fut is not None and self.transport is not None
        sent = 0
        for piece in body:
            view = memoryview(piece).cast("B")
            # large pieces go out in slices, each when the transport has room: the kernel
            # takes them straight from the part buffer and no big copy is queued
            for start in range(0, len(view), WRITE_SLICE):
                if not self._writable.is_set():
                    await self._wait_writable(idle_timeout)
                # the server may answer before reading the whole body: finish sending after
                # a success (servers such as nginx reply early and drain), abandon the rest
                # after a failure and never reuse the connection
                if fut.done() and (fut.exception() is not None or not 200 <= fut.result().status < 300):
                    self.reusable = False
                    return
                if not self.open:
                    return
                chunk = view[start:start + WRITE_SLICE]
                self.transport.write(chunk)
                self.activity += 1
                if on_sent is not None:
                    sent += len(chunk)
                    on_sent(sent)

    async def _wait_writable(self, idle_timeout: float) -> None:
        while not self._writable.is_set():
            last = self.activity
            try:
                await asyncio.wait_for(self._writable.wait(), idle_timeout)
            except asyncio.TimeoutError:
                if self.activity == last:
                    raise ExchangeError(error("AWS_IO_SOCKET_TIMEOUT", "the server stopped reading")) from None

    async def _wait_response(self, idle_timeout: float) -> Response:
        fut = self._fut
        assert fut is not None
        while True:
            last = self.activity
            try:
                return await asyncio.wait_for(asyncio.shield(fut), idle_timeout)
            except asyncio.TimeoutError:
                if fut.done():
                    return fut.result()
                if self.activity == last:
                    raise ExchangeError(error("AWS_IO_SOCKET_TIMEOUT", "no response from the server")) from None


class ConnectionPool:
    """Idle keep-alive connections to one endpoint, and the connect logic."""

    def __init__(self, host: str, port: int, *, tls_options: Any, bootstrap: Any,
                 socket_options: Any) -> None:
        self.host = host
        self.port = port
        self._tls = tls_options
        self._bootstrap = bootstrap
        self._socket_options = socket_options
        self._idle: collections.deque[tuple[float, S3Connection]] = collections.deque()
        self.max_idle_sec = 50.0

    async def acquire(self) -> S3Connection:
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if conn.open and conn.reusable and now - since < self.max_idle_sec:
                return conn
            conn.close()
        from .._net.connect import open_connection

        try:
            _, proto = await open_connection(self.host, self.port, protocol_factory=S3Connection,
                                             bootstrap=self._bootstrap, socket_options=self._socket_options,
                                             tls_connection_options=self._tls)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            crt = exc if getattr(exc, "name", None) else error("AWS_IO_SOCKET_CONNECT_ABORTED", str(exc))
            raise ExchangeError(crt) from exc
        return cast(S3Connection, proto)  # built by protocol_factory=S3Connection

    def release(self, conn: S3Connection) -> None:
        if conn.open and conn.reusable:
            self._idle.append((time.monotonic(), conn))
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            _, conn = self._idle.pop()
            conn.close()
