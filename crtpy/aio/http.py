"""asyncio HTTP client: connections and streams to ``await``.

Connections made here run on the caller's own event loop (no hop through a background
thread): ``await AIOHttpClientConnectionUnified.new(...)`` connects from the running loop,
and the stream's events feed asyncio futures on it directly.  All awaits on a stream must
happen on the loop that made it.
"""
from __future__ import annotations

import asyncio
import collections
import io
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from .._http.common import Dispatcher
from .._runtime.futures import CrtFuture
from ..http import (
    Http2Setting,
    HttpClientConnectionBase,
    HttpClientStreamBase,
    HttpProxyOptions,
    HttpRequest,
    HttpVersion,
)

__all__ = [
    "AIOHttp2ClientConnection",
    "AIOHttp2ClientStream",
    "AIOHttpClientConnection",
    "AIOHttpClientConnectionUnified",
    "AIOHttpClientStream",
    "AIOHttpClientStreamUnified",
]

ClientBootstrap = Any
SocketOptions = Any
TlsConnectionOptions = Any


def _present(*args: Any, **kwargs: Any) -> None:
    """Stands in for user callbacks: aio streams always take response and body events."""


_Conn = TypeVar("_Conn", bound="AIOHttpClientConnectionUnified")


async def _aio_connect(cls: type[_Conn], host_name: str, port: int, bootstrap: Any, socket_options: Any,
                       tls_connection_options: Any, proxy_options: Any,
                       expected_version: HttpVersion | None, **settings: Any) -> _Conn:
    from .._http.connect import HTTP2, bind, establish

    if not isinstance(host_name, str):
        raise TypeError("host_name must be a str")
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError("port must be an int")
    if proxy_options is not None and not isinstance(proxy_options, HttpProxyOptions):
        raise TypeError("proxy_options must be an HttpProxyOptions")
    if settings.get("manual_window_management") and settings.get("initial_window_size") is None:
        raise ValueError("initial_window_size is required when manual_window_management is True")
    shutdown = CrtFuture()
    engine, version = await establish(
        host_name, port, bootstrap=bootstrap, socket_options=socket_options,
        tls_connection_options=tls_connection_options, proxy_options=proxy_options,
        expected_version=None if expected_version is None else int(expected_version),
        dispatcher=Dispatcher(inline=True), shutdown_future=shutdown, **settings)
    target: type[AIOHttpClientConnectionUnified] = cls
    if cls is AIOHttpClientConnectionUnified:
        target = AIOHttp2ClientConnection if version == HTTP2 else AIOHttpClientConnection
    conn = target()
    bind(conn, engine, host_name, port, version, shutdown)
    # ``target`` is ``cls`` or, for the unified class, one of its subclasses
    return cast(_Conn, conn)


class AIOHttpClientConnectionUnified(HttpClientConnectionBase):
    """An asyncio HTTP connection whose protocol (HTTP/1.1 or HTTP/2) is whatever the
    server negotiates.  Make one with ``await AIOHttpClientConnectionUnified.new(...)``."""

    @classmethod
    async def new(cls,
                  host_name: str,
                  port: int,
                  bootstrap: ClientBootstrap | None = None,
                  socket_options: SocketOptions | None = None,
                  tls_connection_options: TlsConnectionOptions | None = None,
                  proxy_options: HttpProxyOptions | None = None,
                  manual_window_management: bool = False,
                  initial_window_size: int | None = None) -> AIOHttpClientConnectionUnified:
        """Connect from the running loop; arguments as for
        :meth:`crtpy.http.HttpClientConnection.new`.  Gives an
        :class:`AIOHttp2ClientConnection` when ALPN picks h2, else an
        :class:`AIOHttpClientConnection`."""
        return await _aio_connect(cls, host_name, port, bootstrap, socket_options,
                                  tls_connection_options, proxy_options, None,
                                  manual_window_management=manual_window_management,
                                  initial_window_size=initial_window_size)

    async def close(self) -> None:  # type: ignore[override]
        """Close the connection and wait until it has shut down."""
        impl = self._impl
        if impl is not None:
            impl.close()
        try:
            await asyncio.wrap_future(self._shutdown_future)
        except Exception:  # noqa: BLE001, S110 - closing reports no error
            pass

    def request(self,
                request: HttpRequest,
                request_body_generator: AsyncIterator[bytes] = None,  # type: ignore[assignment]  # noqa: RUF013
                loop: asyncio.AbstractEventLoop | None = None) -> AIOHttpClientStreamUnified:
        """Send ``request`` at once and return its stream.

        Args:
            request (HttpRequest): the request.
            request_body_generator (AsyncIterator[bytes]): HTTP/2 only: the request body as
                an async iterator of bytes, sent as it is produced (full duplex).
            loop (Optional[asyncio.AbstractEventLoop]): the loop for the stream's awaits;
                the running loop by default.
        """
        return AIOHttpClientStreamUnified(self, request, request_body_generator, loop)  # type: ignore[arg-type]


class AIOHttpClientConnection(AIOHttpClientConnectionUnified):
    """An asyncio HTTP/1.1 connection."""

    @classmethod
    async def new(cls,
                  host_name: str,
                  port: int,
                  bootstrap: ClientBootstrap | None = None,
                  socket_options: SocketOptions | None = None,
                  tls_connection_options: TlsConnectionOptions | None = None,
                  proxy_options: HttpProxyOptions | None = None,
                  manual_window_management: bool = False,
                  initial_window_size: int | None = None,
                  read_buffer_capacity: int | None = None) -> AIOHttpClientConnection:
        """Connect from the running loop, speaking HTTP/1.1 (fails with
        AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL if TLS negotiates h2)."""
        return await _aio_connect(cls, host_name, port, bootstrap, socket_options,
                                  tls_connection_options, proxy_options, HttpVersion.Http1_1,
                                  manual_window_management=manual_window_management,
                                  initial_window_size=initial_window_size,
                                  read_buffer_capacity=read_buffer_capacity)

    def request(self,
                request: HttpRequest,
                request_body_generator: AsyncIterator[bytes] = None,  # type: ignore[assignment]  # noqa: RUF013
                loop: asyncio.AbstractEventLoop | None = None) -> AIOHttpClientStream:
        """Send ``request`` (its body comes from ``request.body_stream``; a body generator
        is ignored on HTTP/1.1) and return its stream."""
        return AIOHttpClientStream(self, request, loop)


class AIOHttp2ClientConnection(AIOHttpClientConnectionUnified):
    """An asyncio HTTP/2 connection."""

    @classmethod
    async def new(cls,  # type: ignore[override]
                  host_name: str,
                  port: int,
                  bootstrap: ClientBootstrap | None = None,
                  socket_options: SocketOptions | None = None,
                  tls_connection_options: TlsConnectionOptions | None = None,
                  proxy_options: HttpProxyOptions | None = None,
                  initial_settings: list[Http2Setting] | None = None,
                  on_remote_settings_changed: Callable[[list[Http2Setting]], None] | None = None,
                  manual_window_management: bool = False,
                  initial_window_size: int | None = None,
                  conn_manual_window_management: bool = False,
                  conn_window_size_threshold: int | None = None,
                  stream_window_size_threshold: int | None = None) -> AIOHttp2ClientConnection:
        """Connect from the running loop, speaking HTTP/2; arguments as for
        :meth:`crtpy.http.Http2ClientConnection.new`.  ``on_remote_settings_changed`` runs
        on the running loop."""
        return await _aio_connect(cls, host_name, port, bootstrap, socket_options,
                                  tls_connection_options, proxy_options, HttpVersion.Http2,
                                  initial_settings=initial_settings,
                                  on_remote_settings_changed=on_remote_settings_changed,
                                  manual_window_management=manual_window_management,
                                  initial_window_size=initial_window_size,
                                  conn_manual_window_management=conn_manual_window_management,
                                  conn_window_size_threshold=conn_window_size_threshold,
                                  stream_window_size_threshold=stream_window_size_threshold)

    def request(self,
                request: HttpRequest,
                request_body_generator: AsyncIterator[bytes] = None,  # type: ignore[assignment]  # noqa: RUF013
                loop: asyncio.AbstractEventLoop | None = None) -> AIOHttp2ClientStream:
        """Send ``request`` and return its stream; with ``request_body_generator`` the body
        is streamed from it (and ``request.body_stream`` is not used)."""
        return AIOHttp2ClientStream(self, request, request_body_generator, loop)  # type: ignore[arg-type]

    def update_window(self, increment_size: int) -> None:
        """Grow the connection's flow-control window by ``increment_size`` bytes."""
        from ..http import _check_increment

        _check_increment(increment_size)
        impl = self._impl
        if impl is not None:
            impl.update_connection_window(increment_size)


class AIOHttpClientStreamUnified(HttpClientStreamBase):
    """A request/response exchange to ``await``.  It starts as soon as it is made."""

    def __init__(self,
                 connection: AIOHttpClientConnection,
                 request: HttpRequest,
                 request_body_generator: AsyncIterator[bytes] = None,  # type: ignore[assignment]  # noqa: RUF013
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = asyncio.get_event_loop_policy().get_event_loop()
        elif not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError("loop must be an asyncio.AbstractEventLoop")
        self._loop = loop
        self._chunks: collections.deque[bytes] = collections.deque()
        self._chunk_waiter: asyncio.Future[None] | None = None
        self._body_ended = False
        self._status_future: asyncio.Future[int] = loop.create_future()
        self._headers_future: asyncio.Future[list[tuple[str, str]]] = loop.create_future()
        self._done_future: asyncio.Future[int] = loop.create_future()
        self._writer: asyncio.Task[None] | None = None
        manual = request_body_generator is not None and connection.version == HttpVersion.Http2
        self._init_common(connection, request, _present, _present, manual)
        self._impl.activate()
        if manual:
            self._writer = loop.create_task(self._write_body(request_body_generator))

    # -- events (on the connection's loop) ---------------------------------------------------
    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_response(self, status_code: int, name_value_pairs: list[tuple[str, str]]) -> None:
        self._response_status_code = status_code
        self._deliver(self._set_response, status_code, name_value_pairs)

    def _set_response(self, status_code: int, headers: list[tuple[str, str]]) -> None:
        if not self._status_future.done():
            self._status_future.set_result(status_code)
        if not self._headers_future.done():
            self._headers_future.set_result(headers)

    def _on_body(self, chunk: bytes) -> None:
        self._deliver(self._add_chunk, chunk)

    def _add_chunk(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._wake()

    def _wake(self) -> None:
        w, self._chunk_waiter = self._chunk_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _on_h2_remote_end_stream(self) -> None:
        self._deliver(self._end_body)

    def _end_body(self) -> None:
        self._body_ended = True
        self._wake()

    def _on_complete(self, exc: BaseException | None) -> None:
        HttpClientStreamBase._on_complete(self, exc)
        self._deliver(self._finish, exc)

    def _finish(self, exc: BaseException | None) -> None:
        self._body_ended = True
        for fut in (self._status_future, self._headers_future):
            if not fut.done():
                if exc is not None:
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved: not awaiting it is fine
                else:
                    fut.cancel()
        if not self._done_future.done():
            if exc is None:
                self._done_future.set_result(self._response_status_code)  # type: ignore[arg-type]
            else:
                self._done_future.set_exception(exc)
                self._done_future.exception()
        self._wake()

    async def _write_body(self, body: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in body:
                if chunk:
                    await asyncio.wrap_future(self._impl.write_data(io.BytesIO(bytes(chunk)), False))
            await asyncio.wrap_future(self._impl.write_data(None, True))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the stream reports the failure
            if not self._done_future.done():
                conn = self._connection._impl
                if conn is not None and hasattr(conn, "loop"):
                    from .._errors import error

                    conn.loop.call_soon(conn._reset_stream, self._impl,
                                        error("AWS_ERROR_HTTP_INVALID_BODY_STREAM"))

    # -- awaitables ------------------------------------------------------------------------
    async def get_response_status_code(self) -> int:
        """The response's status code, once it has arrived."""
        return await asyncio.shield(self._status_future)

    async def get_response_headers(self) -> list[tuple[str, str]]:
        """The response's headers as ``(name, value)`` pairs, once they have arrived."""
        return await asyncio.shield(self._headers_future)

    async def get_next_response_chunk(self) -> bytes:
        """The next piece of the response body; ``b""`` once the body is over."""
        while True:
            if self._chunks:
                return self._chunks.popleft()
            if self._body_ended or self._done_future.done():
                return b""
            if self._chunk_waiter is None:
                self._chunk_waiter = self._loop.create_future()
            await self._chunk_waiter

    async def wait_for_completion(self) -> int:
        """Wait for the exchange to end; gives the status code or raises its error."""
        return await asyncio.shield(self._done_future)


class AIOHttpClientStream(AIOHttpClientStreamUnified):
    """An asyncio HTTP/1.1 exchange.  Made by :meth:`AIOHttpClientConnection.request`."""

    def __init__(self,
                 connection: AIOHttpClientConnection,
                 request: HttpRequest,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(connection, request, None, loop)  # type: ignore[arg-type]


class AIOHttp2ClientStream(AIOHttpClientStreamUnified):
    """An asyncio HTTP/2 exchange.  Made by :meth:`AIOHttp2ClientConnection.request`."""

    def __init__(self,
                 connection: AIOHttpClientConnection,
                 request: HttpRequest,
                 request_body_generator: AsyncIterator[bytes] = None,  # type: ignore[assignment]  # noqa: RUF013
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(connection, request, request_body_generator, loop)
