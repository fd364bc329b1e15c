"""Keep-alive HTTP/1.1 connections for the S3 client's hot path.

One :class:`S3Connection` carries one exchange at a time, on the HTTP/1.1 engine that
``crtpy.http`` uses too (``crtpy._http.h1``): body pieces of 2xx responses go straight
to a sink chosen by the caller (a part buffer, a file writer), error bodies are
collected.  :class:`ConnectionPool` keeps idle connections per endpoint.
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from .._errors import error
from .._http.common import Dispatcher
from .._http.h1 import WRITE_SLICE, H1Connection, WireRequest
from .._http.transport import ConnProtocol
from .._runtime.futures import CrtFuture

Buffer = Any
Headers = list[tuple[str, str]]

#: a connection that sends or receives nothing for this long is considered dead
DEFAULT_IDLE_TIMEOUT_SEC = 30.0
READ_BUFFER = 64 * 1024

__all__ = ["DEFAULT_IDLE_TIMEOUT_SEC", "WRITE_SLICE", "ConnectionPool", "ExchangeError", "Response",
           "S3Connection"]


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


class _Receiver:
    """Takes one exchange's events from the engine: 2xx body pieces go to the sink,
    other bodies are collected."""

    __slots__ = ("err_parts", "error", "headers", "ok", "on_head", "sink", "status")

    def __init__(self, sink: Callable[[bytes], None] | None,
                 on_head: Callable[[int, Headers], None] | None = None) -> None:
        self.sink = sink
        self.on_head = on_head
        self.status = 0
        self.headers: Headers = []
        self.ok = False
        self.err_parts: list[bytes] = []
        self.error: BaseException | None = None

    def _on_response(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        self.ok = 200 <= status < 300
        if self.on_head is not None:
            self.on_head(status, headers)

    def _on_body(self, chunk: bytes) -> None:
        if self.ok and self.sink is not None:
            try:
                self.sink(chunk)
            except BaseException as exc:  # noqa: BLE001 - fails this exchange (see exchange)
                if self.error is None:
                    self.error = exc
        else:
            self.err_parts.append(chunk)


class S3Connection:
    """One keep-alive HTTP/1.1 connection of the S3 client: a thin face over the
    HTTP/1.1 engine of ``crtpy.http`` (:class:`crtpy._http.h1.H1Connection`), which
    parses the responses, reads large bodies straight from the socket, writes request
    bodies in slices and decides whether the connection may carry another exchange.
    Runs on the loop that made it; exchanges run one after another."""

    def __init__(self, engine: H1Connection) -> None:
        self.engine = engine

    @property
    def open(self) -> bool:
        return self.engine.is_open()

    @property
    def reusable(self) -> bool:
        return self.engine.reusable

    @property
    def activity(self) -> int:
        return self.engine.activity

    def close(self) -> None:
        self.engine.abort()

    def hold_reading(self) -> None:
        """(loop) Stop reading this connection's socket (a sink that cannot keep up)."""
        self.engine.hold_reading()

    def release_reading(self) -> None:
        self.engine.release_reading()

    def use_raw_pool(self, pool: Any) -> None:
        """(loop) Read large bodies into ``pool``'s buffers (None: fresh ``bytes``);
        the sink then gets memoryviews and must give their buffers back."""
        self.engine.raw_pool = pool

    async def exchange(self, head: bytes, body: Sequence[Buffer] | None, sink: Callable[[bytes], None] | None,
                       *, is_head: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SEC,
                       on_sent: Callable[[int], None] | None = None,
                       on_head: Callable[[int, Headers], None] | None = None) -> Response:
        """Send ``head`` and the ``body`` pieces; 2xx body pieces go to ``sink``;
        ``on_head(status, headers)`` sees the final response's head before its body."""
        engine = self.engine
        if not engine.reusable:
            raise ExchangeError(error("AWS_ERROR_HTTP_CONNECTION_CLOSED"))
        rx = _Receiver(sink, on_head)
        wire = WireRequest(head, body or None, idle_timeout=idle_timeout, on_sent=on_sent)
        try:
            await engine.exchange(rx, wire, head_method=is_head)
        except asyncio.CancelledError:
            engine.abort()
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure of the exchange is retryable
            engine.abort()
            raise ExchangeError(exc if getattr(exc, "name", None) else
                                error("AWS_ERROR_HTTP_CONNECTION_CLOSED", str(exc))) from None
        if rx.error is not None:
            # the sink refused the body: this exchange fails, the connection is not reused
            engine.abort()
            bad = rx.error
            raise ExchangeError(bad if getattr(bad, "name", None) else
                                error("AWS_ERROR_HTTP_PROTOCOL_ERROR", f"bad HTTP response: {bad}"))
        body_bytes = b"".join(rx.err_parts) if not rx.ok or sink is None else None
        return Response(rx.status, rx.headers, body_bytes)


def _new_protocol() -> ConnProtocol:
    # responses' heads and small bodies pass through this buffer; large bodies are read
    # by the engine outside it
    return ConnProtocol(READ_BUFFER)


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
            transport, proto = await open_connection(self.host, self.port, protocol_factory=_new_protocol,
                                                     bootstrap=self._bootstrap,
                                                     socket_options=self._socket_options,
                                                     tls_connection_options=self._tls)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            crt = exc if getattr(exc, "name", None) else error("AWS_IO_SOCKET_CONNECT_ABORTED", str(exc))
            raise ExchangeError(crt) from exc
        protocol = cast(ConnProtocol, proto)  # built by protocol_factory=ConnProtocol
        protocol.transport = transport
        engine = H1Connection(asyncio.get_running_loop(), protocol, shutdown_future=CrtFuture(),
                              dispatcher=Dispatcher(inline=True))
        return S3Connection(engine)

    def release(self, conn: S3Connection) -> None:
        if conn.open and conn.reusable:
            self._idle.append((time.monotonic(), conn))
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            _, conn = self._idle.pop()
            conn.close()
