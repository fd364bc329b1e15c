"""HTTP proxies: CONNECT tunnels (reusable by websocket and mqtt), forwarding headers,
and proxy settings from the environment (HTTP_PROXY / HTTPS_PROXY / NO_PROXY).
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, cast

import httptools

from .._errors import error

__all__ = ["env_proxy_options", "open_tunnel", "proxy_auth_headers", "use_tunnel"]

_MAX_CONNECT_RESPONSE = 64 * 1024


def proxy_auth_headers(proxy_options: Any) -> list[tuple[str, str]]:
    """``Proxy-Authorization`` for Basic auth, else nothing."""
    if proxy_options is None or int(proxy_options.auth_type) != 1:
        return []
    user = proxy_options.auth_username or ""
    password = proxy_options.auth_password or ""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return [("Proxy-Authorization", f"Basic {token}")]


def use_tunnel(proxy_options: Any, origin_tls: bool) -> bool:
    """Whether the connection goes through a CONNECT tunnel (else requests are forwarded)."""
    ctype = int(proxy_options.connection_type)
    if ctype == 2:
        return True
    if ctype == 1:
        if origin_tls:
            raise error("AWS_ERROR_INVALID_ARGUMENT",
                        "a Forwarding proxy connection cannot use TLS to the origin")
        return False
    return origin_tls  # Legacy


def _authority(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class _ConnectReader(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; bytes after it are kept for the next protocol."""

    def __init__(self) -> None:
        self.done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection: asyncio passes a Transport here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self._buf += data
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_CONNECT_RESPONSE:
                self.done.set_exception(error("AWS_ERROR_HTTP_PROXY_CONNECT_FAILED",
                                              "the proxy's CONNECT response is too large"))
            return
        head = bytes(self._buf[:end + 4])
        rest = bytes(self._buf[end + 4:])
        self._buf = bytearray()
        status = 0

        class _P:
            def on_headers_complete(self) -> None:
                pass

        parser = httptools.HttpResponseParser(_P())
        try:
            parser.feed_data(head)
            status = parser.get_status_code()
        except httptools.HttpParserError:
            self.done.set_exception(error("AWS_ERROR_HTTP_PROTOCOL_ERROR",
                                          "malformed CONNECT response from the proxy"))
            return
        self.done.set_result((status, rest))

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(error("AWS_ERROR_HTTP_PROXY_CONNECT_FAILED",
                                          "the proxy closed the connection during CONNECT"))


async def open_tunnel(host: str, port: int, proxy_options: Any, *,
                      protocol_factory: Callable[[], asyncio.BaseProtocol],
                      bootstrap: Any = None, socket_options: Any = None,
                      tls_connection_options: Any = None,
                      extra_headers: list[tuple[str, str]] | None = None,
                      ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Connect to the proxy (TLS to it when its options say so), open a CONNECT tunnel to
    ``host:port``, then hand the connection to a new ``protocol_factory()`` protocol,
    negotiating TLS with the origin through the tunnel when ``tls_connection_options``
    is given.  Runs on any loop.  Returns ``(transport, protocol)``.

    Failures are AwsCrtError: AWS_ERROR_HTTP_PROXY_CONNECT_FAILED when the proxy refuses
    (any non-2xx answer, including 407 for rejected credentials), or the connect/TLS
    error names of crtpy._net."""
    from .._net.connect import open_connection, start_tls

    transport, reader = await open_connection(
        proxy_options.host_name, proxy_options.port, protocol_factory=_ConnectReader,
        bootstrap=bootstrap, socket_options=socket_options,
        tls_connection_options=proxy_options.tls_connection_options)
    assert isinstance(reader, _ConnectReader)
    try:
        authority = _authority(host, port)
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        for name, value in [*proxy_auth_headers(proxy_options), *(extra_headers or [])]:
            lines.append(f"{name}: {value}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, rest = await reader.done
        if not 200 <= status < 300:
            raise error("AWS_ERROR_HTTP_PROXY_CONNECT_FAILED",
                        f"the proxy answered CONNECT with status {status}")
        protocol = protocol_factory()
        if tls_connection_options is not None:
            transport = await start_tls(transport, protocol, tls_connection_options, host)
            protocol.connection_made(transport)
        else:
            transport.pause_reading()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            if rest:
                if hasattr(protocol, "unread"):
                    protocol.unread(rest)
                else:
                    # Callers pass stream protocols (asyncio.Protocol), typed BaseProtocol for them.
                    protocol.data_received(rest)  # type: ignore[attr-defined]
            transport.resume_reading()
        return transport, protocol
    except BaseException:
        transport.close()
        raise


# ---------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------
def _no_proxy_match(host: str, port: int, no_proxy: str) -> bool:
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port.isdigit():
            if int(entry_port) != port:
                continue
            entry = entry_host
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".")
        entry = entry.removeprefix("*.")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def env_proxy_options(host: str, port: int, origin_tls: bool,
                      environ: Mapping[str, str] | None = None) -> Any | None:
    """Proxy options from HTTPS_PROXY (TLS origins) or HTTP_PROXY, honouring NO_PROXY;
    None when no proxy applies.  Lower-case names win over upper-case ones, as in curl."""
    from ..http import HttpProxyAuthenticationType, HttpProxyConnectionType, HttpProxyOptions

    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name.lower()) or env.get(name.upper()) or ""

    url = get("https_proxy") if origin_tls else get("http_proxy")
    if not url:
        return None
    if _no_proxy_match(host, port, get("no_proxy")):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxy_tls = None
    if parts.scheme == "https":
        from ..io import ClientTlsContext, TlsContextOptions

        proxy_tls = ClientTlsContext(TlsContextOptions()).new_connection_options()
        proxy_tls.set_server_name(parts.hostname)
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return HttpProxyOptions(
        parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
        tls_connection_options=proxy_tls,
        auth_type=HttpProxyAuthenticationType.Basic if user is not None else HttpProxyAuthenticationType.Nothing,
        auth_username=user, auth_password=password,
        connection_type=HttpProxyConnectionType.Tunneling if origin_tls else HttpProxyConnectionType.Forwarding)
