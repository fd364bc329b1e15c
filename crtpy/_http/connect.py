"""Setting up HTTP client connections: TCP/TLS through crtpy._net (directly, through a
forwarding proxy or a CONNECT tunnel), then the HTTP/1.1 or HTTP/2 engine that ALPN (or
the caller) picks."""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .._errors import error
from .._runtime.futures import CrtFuture, failed
from .common import Dispatcher
from .proxy import _authority, open_tunnel, proxy_auth_headers, use_tunnel
from .transport import ConnProtocol

HTTP1, HTTP2 = 2, 3  # HttpVersion values


async def establish(host: str, port: int, *, bootstrap: Any, socket_options: Any,
                    tls_connection_options: Any, proxy_options: Any,
                    expected_version: int | None, dispatcher: Dispatcher,
                    shutdown_future: CrtFuture, read_buffer_capacity: int | None = None,
                    manual_window_management: bool = False,
                    initial_window_size: int | None = None,
                    **h2_settings: Any) -> tuple[Any, int]:
    """Open the connection on the running loop and return ``(engine, HttpVersion)``."""
    from .._net.connect import negotiated_alpn, open_connection

    def factory() -> ConnProtocol:
        return ConnProtocol(read_buffer_capacity)

    forward = None
    if proxy_options is not None:
        if use_tunnel(proxy_options, tls_connection_options is not None):
            transport, protocol = await open_tunnel(
                host, port, proxy_options, protocol_factory=factory, bootstrap=bootstrap,
                socket_options=socket_options, tls_connection_options=tls_connection_options)
        else:
            transport, protocol = await open_connection(
                proxy_options.host_name, proxy_options.port, protocol_factory=factory,
                bootstrap=bootstrap, socket_options=socket_options,
                tls_connection_options=proxy_options.tls_connection_options)
            forward = (f"http://{_authority(host, port) if port != 80 else host}",
                       proxy_auth_headers(proxy_options))
    else:
        transport, protocol = await open_connection(
            host, port, protocol_factory=factory, bootstrap=bootstrap,
            socket_options=socket_options, tls_connection_options=tls_connection_options)
    assert isinstance(protocol, ConnProtocol)
    protocol.transport = transport
    loop = asyncio.get_running_loop()
    try:
        alpn = negotiated_alpn(transport) if tls_connection_options is not None else None
        if alpn == "h2" or (expected_version == HTTP2 and tls_connection_options is None):
            version = HTTP2
        elif alpn in (None, "http/1.1", "http/1.0"):
            version = HTTP1
        else:
            raise error("AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL", f"the server chose ALPN {alpn!r}")
        if expected_version is not None and version != expected_version:
            raise error("AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL",
                        "the server did not agree to HTTP/2" if expected_version == HTTP2
                        else "the server chose HTTP/2")
        if version == HTTP2:
            from .h2conn import H2Connection

            engine: Any = H2Connection(
                loop, protocol, shutdown_future=shutdown_future, dispatcher=dispatcher,
                authority=_authority(host, port) if port not in (80, 443) else host,
                scheme="https" if tls_connection_options is not None else "http",
                manual_window_management=manual_window_management,
                initial_window_size=initial_window_size, **h2_settings)
            await engine.start()
        else:
            from .h1 import H1Connection

            engine = H1Connection(loop, protocol, shutdown_future=shutdown_future,
                                  dispatcher=dispatcher,
                                  manual_window_management=manual_window_management,
                                  initial_window_size=initial_window_size, forward_proxy=forward)
    except BaseException:
        transport.close()
        raise
    return engine, version


def new_connection(host_name: str, port: int, *, bootstrap: Any = None, socket_options: Any = None,
                   tls_connection_options: Any = None, proxy_options: Any = None,
                   expected_version: int | None = None, **settings: Any) -> CrtFuture:
    """Connect on one of the bootstrap's loop threads; the future gives the public
    connection object (HttpClientConnection or Http2ClientConnection)."""
    from .. import http
    from .._net.connect import pick_loop

    try:
        lt = pick_loop(bootstrap)
    except BaseException as exc:  # noqa: BLE001 - reported through the future, as the reference
        return failed(exc)
    result = CrtFuture()
    shutdown = CrtFuture()
    dispatcher = Dispatcher()

    async def run() -> None:
        engine, version = await establish(
            host_name, port, bootstrap=bootstrap, socket_options=socket_options,
            tls_connection_options=tls_connection_options, proxy_options=proxy_options,
            expected_version=expected_version, dispatcher=dispatcher, shutdown_future=shutdown,
            **settings)
        cls = http.Http2ClientConnection if version == HTTP2 else http.HttpClientConnection
        conn = cls()
        bind(conn, engine, host_name, port, version, shutdown)
        if not result.try_set_result(conn):
            engine.close()

    inner = lt.run_coroutine(run())

    def done(f: Any) -> None:
        if f.cancelled():
            result.cancel()
        elif f.exception() is not None:
            result.try_set_exception(f.exception())

    inner.add_done_callback_inline(done)
    return result


def bind(conn: Any, engine: Any, host_name: str, port: int, version: int, shutdown: CrtFuture) -> None:
    """Attach an engine to a public connection object; dropping the object closes it."""
    from ..http import HttpVersion

    conn._impl = engine
    conn._host_name = host_name
    conn._port = port
    conn._version = HttpVersion(version)
    conn._shutdown_future = shutdown
    # dropping the connection object closes it; once shut down, the finalizer lets go of
    # the engine (so nothing keeps it, or what it references, alive)
    closer = weakref.finalize(conn, engine.close)
    engine.before_shutdown = closer.detach
    if shutdown.done():
        closer.detach()
