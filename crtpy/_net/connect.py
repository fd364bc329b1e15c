"""Opening connections: resolve, TCP connect (socket options, timeout), TLS handshake.

Every protocol module opens its sockets through :func:`open_connection`; the coroutines
use ``asyncio.get_running_loop()`` so they work on crtpy's loop threads and on a user's
own loop alike.  Errors are ``AwsCrtError`` with the reference runtime's names.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import error
from .errors import map_connect_error
from .resolver import HostCache, ResolvedAddress, default_cache

if TYPE_CHECKING:
    from .._runtime.loop import LoopThread
    from ..io import ClientBootstrap, SocketOptions, TlsConnectionOptions

__all__ = [
    "map_connect_error",
    "negotiated_alpn",
    "open_connection",
    "pick_loop",
    "start_tls",
    "tls_info",
]

_DEFAULT_CONNECT_TIMEOUT_MS = 5000
_MIN_HANDSHAKE_TIMEOUT_SEC = 10.0


def pick_loop(bootstrap: ClientBootstrap | None) -> LoopThread:
    """One loop thread of the bootstrap's event-loop group (round-robin); the static
    default bootstrap when ``bootstrap`` is None."""
    from ..io import ClientBootstrap

    if bootstrap is None:
        bootstrap = ClientBootstrap.get_or_create_static_default()
    elif not isinstance(bootstrap, ClientBootstrap):
        raise TypeError(f"bootstrap must be a ClientBootstrap, not {type(bootstrap).__name__}")
    bootstrap._check_fork()
    return bootstrap._event_loop_group._next_loop_thread()


def _host_cache(bootstrap: ClientBootstrap | None) -> HostCache:
    if bootstrap is None:
        return default_cache()
    bootstrap._check_fork()
    return bootstrap._host_resolver._cache


def _apply_socket_options(sock: socket.socket, opts: SocketOptions | None) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if opts is None or not opts.keep_alive:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    for attr, value in (("TCP_KEEPIDLE", opts.keep_alive_timeout_secs),
                        ("TCP_KEEPINTVL", opts.keep_alive_interval_secs),
                        ("TCP_KEEPCNT", opts.keep_alive_max_probes)):
        if value and hasattr(socket, attr):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, attr), int(value))


def bind_to_interface(sock: socket.socket, name: str) -> None:
    """Send and receive only through network interface ``name`` (Linux SO_BINDTODEVICE)."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        raise error("AWS_ERROR_PLATFORM_NOT_SUPPORTED", "binding a socket to an interface needs Linux")
    sock.setsockopt(socket.SOL_SOCKET, option, name.encode() + b"\0")


async def _connect_socket(addr: ResolvedAddress, port: int, timeout: float,
                          opts: SocketOptions | None, interface_name: str | None = None) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        _apply_socket_options(sock, opts)
        if interface_name:
            bind_to_interface(sock, interface_name)
        await asyncio.wait_for(_sock_connect(loop, sock, addr.with_port(port)), timeout)
        return sock
    except BaseException:
        sock.close()
        raise


async def _sock_connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, sockaddr: Any) -> None:
    """Connect the non-blocking ``sock`` to an already resolved address.  (uvloop's
    ``sock_connect`` resolves again and imports the idna codec, ~0.4 MiB, to do it.)"""
    err = sock.connect_ex(sockaddr)
    # EINTR: a signal interrupted connect(), which goes on asynchronously (as asyncio's
    # own sock_connect treats it): wait for the outcome like for EINPROGRESS.
    if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):
        fd = sock.fileno()
        writable = loop.create_future()
        loop.add_writer(fd, _settle_once, writable)
        try:
            await writable
        finally:
            loop.remove_writer(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"connect to {sockaddr[0]} port {sockaddr[1]}: {os.strerror(err)}")


def _settle_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _timeouts(socket_options: SocketOptions | None) -> tuple[float, float]:
    ms = socket_options.connect_timeout_ms if socket_options is not None else _DEFAULT_CONNECT_TIMEOUT_MS
    connect = (ms if ms and ms > 0 else _DEFAULT_CONNECT_TIMEOUT_MS) / 1000.0
    return connect, max(connect, _MIN_HANDSHAKE_TIMEOUT_SEC)


async def open_connection(
    host: str, port: int, *,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    bootstrap: ClientBootstrap | None = None,
    socket_options: SocketOptions | None = None,
    tls_connection_options: TlsConnectionOptions | None = None,
    interface_name: str | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Resolve ``host``, connect to ``port`` and (with TLS options) negotiate TLS.

    ``interface_name`` (or, when it is None, a ``_interface_name`` attribute of
    ``socket_options``, which lets pools that only pass socket options choose one) binds
    the TCP socket to that network interface.

    Returns ``(transport, protocol)``.  Raises AwsCrtError with the reference's names
    (AWS_IO_DNS_INVALID_NAME, AWS_IO_SOCKET_CONNECTION_REFUSED, AWS_IO_SOCKET_TIMEOUT,
    AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE, ...).
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be str, not {type(host).__name__}")
    port = int(port)
    loop = asyncio.get_running_loop()
    connect_timeout, handshake_timeout = _timeouts(socket_options)
    where = f"{host}:{port}"
    ssl_ctx: ssl.SSLContext | None = None
    server_hostname: str | None = None
    if tls_connection_options is not None:
        ssl_ctx = tls_connection_options._ssl_context()
        server_hostname = tls_connection_options._server_name or _sni_host(host)

    domain = int(socket_options.domain) if socket_options is not None else 1
    if socket_options is not None and int(socket_options.type) != 0:
        raise error("AWS_IO_SOCKET_INVALID_OPTIONS", "connections need SocketType.Stream")

    try:
        if domain == 2:  # SocketDomain.Local: host is a unix socket path
            transport, protocol = await asyncio.wait_for(
                loop.create_unix_connection(protocol_factory, host, ssl=ssl_ctx,
                                            server_hostname=server_hostname if ssl_ctx else None,
                                            ssl_handshake_timeout=handshake_timeout if ssl_ctx else None),
                connect_timeout + (handshake_timeout if ssl_ctx else 0))
            return transport, protocol

        addresses = await _host_cache(bootstrap).resolve(host)
        sock: socket.socket | None = None
        last_exc: BaseException | None = None
        for addr in addresses:
            try:
                sock = await _connect_socket(addr, port, connect_timeout, socket_options,
                                             interface_name or getattr(socket_options, "_interface_name", None))
                break
            except (OSError, asyncio.TimeoutError) as exc:
                last_exc = exc
        if sock is None:
            assert last_exc is not None
            raise last_exc
        try:
            transport, protocol = await loop.create_connection(
                protocol_factory, sock=sock, ssl=ssl_ctx,
                server_hostname=server_hostname if ssl_ctx else None,
                ssl_handshake_timeout=handshake_timeout if ssl_ctx else None)
        except ConnectionError as exc:
            sock.close()
            if ssl_ctx is None or isinstance(exc, ConnectionRefusedError):
                raise
            raise _handshake_lost(exc, where) from exc
        except BaseException:
            sock.close()
            raise
        return transport, protocol
    except (OSError, asyncio.TimeoutError, ssl.SSLError, UnicodeError) as exc:
        raise map_connect_error(_tls_timeout(exc, ssl_ctx), where) from exc


def _tls_timeout(exc: BaseException, ssl_ctx: ssl.SSLContext | None) -> BaseException:
    # asyncio reports a handshake timeout as ConnectionAbortedError / TimeoutError with this text
    if ssl_ctx is not None and "handshake is taking longer" in str(exc):
        return error("AWS_IO_TLS_NEGOTIATION_TIMEOUT", "the TLS handshake timed out")
    return exc


def _handshake_lost(exc: BaseException, where: str) -> BaseException:
    if "handshake is taking longer" in str(exc):
        return error("AWS_IO_TLS_NEGOTIATION_TIMEOUT", f"the TLS handshake timed out ({where})")
    return error("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE",
                 f"TLS negotiation failed: the peer closed the connection during the handshake ({where})")


def _sni_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


async def start_tls(transport: asyncio.Transport, protocol: asyncio.BaseProtocol,
                    tls_connection_options: TlsConnectionOptions,
                    server_hostname: str) -> asyncio.Transport:
    """Upgrade an open connection to TLS (e.g. through an HTTP CONNECT proxy tunnel).
    The TLS options' own server name, when set, wins over ``server_hostname``."""
    loop = asyncio.get_running_loop()
    ssl_ctx = tls_connection_options._ssl_context()
    name = tls_connection_options._server_name or _sni_host(server_hostname)
    try:
        new_transport = await loop.start_tls(transport, protocol, ssl_ctx, server_hostname=name,
                                             ssl_handshake_timeout=_MIN_HANDSHAKE_TIMEOUT_SEC)
    except ConnectionError as exc:
        raise _handshake_lost(exc, name) from exc
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        raise map_connect_error(_tls_timeout(exc, ssl_ctx), name) from exc
    if new_transport is None:
        raise error("AWS_IO_SOCKET_CLOSED", "the connection closed during the TLS handshake")
    return new_transport


def negotiated_alpn(transport: asyncio.BaseTransport) -> str | None:
    """The ALPN protocol the TLS handshake settled on, or None (plain TCP, no ALPN)."""
    ssl_obj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if ssl_obj is None:
        return None
    return ssl_obj.selected_alpn_protocol()


def tls_info(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """TLS version, cipher and ALPN of a connection (empty for plain TCP)."""
    ssl_obj = transport.get_extra_info("ssl_object")
    if ssl_obj is None:
        return {}
    cipher = ssl_obj.cipher()
    return {"version": ssl_obj.version(), "cipher": cipher[0] if cipher else None,
            "alpn": ssl_obj.selected_alpn_protocol()}

