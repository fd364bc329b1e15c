"""One HTTP request through crtpy's own HTTP client, for the credentials sources.

Blocking: called from an auth worker thread, never from a loop thread.  Response bodies
are capped (credentials documents are small) and every request has a timeout.
"""
from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import error

_log = logging.getLogger("crtpy.auth")

MAX_BODY = 64 * 1024
DEFAULT_TIMEOUT = 10.0


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str = ""

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_endpoint(url: str, default_scheme: str = "https") -> Endpoint:
    """``scheme://host[:port][/path]`` or a bare ``host[:port]``."""
    if "://" not in url:
        url = f"{default_scheme}://{url}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise error("AWS_ERROR_INVALID_ARGUMENT", "The endpoint is not a valid http(s) URL.")
    try:
        port = parts.port
    except ValueError:
        raise error("AWS_ERROR_INVALID_ARGUMENT", "The endpoint has an invalid port.") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    return Endpoint(scheme, parts.hostname, port, parts.path.rstrip("/"))


def _close_late_connection(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()


def request(endpoint: Endpoint, method: str, path: str, headers: Sequence[tuple[str, str]] = (),
            body: bytes | None = None, *, tls_ctx: Any = None, bootstrap: Any = None,
            proxy_options: Any = None, timeout: float = DEFAULT_TIMEOUT,
            signer: Any = None) -> Response:
    """Send one request and return the whole response.  ``signer(request)`` may sign the
    request before it is sent.  Connection failures raise the HTTP client's errors."""
    import io

    from .. import http
    from .. import io as crt_io

    tls_options = None
    if endpoint.scheme == "https":
        if tls_ctx is None:
            tls_ctx = crt_io.ClientTlsContext(crt_io.TlsContextOptions())
        tls_options = tls_ctx.new_connection_options()
        tls_options.set_server_name(endpoint.host)
    conn_future = http.HttpClientConnection.new(
        host_name=endpoint.host, port=endpoint.port, bootstrap=bootstrap,
        tls_connection_options=tls_options, proxy_options=proxy_options)
    try:
        conn = conn_future.result(timeout)
    except concurrent.futures.TimeoutError:
        # close the connection if it still comes up
        conn_future.add_done_callback(_close_late_connection)
        raise error("AWS_IO_SOCKET_TIMEOUT", "Connecting to the credentials endpoint timed out.") from None
    try:
        all_headers = [("Host", endpoint.host_header)] + list(headers)
        if body is not None:
            all_headers.append(("Content-Length", str(len(body))))
        req = http.HttpRequest(method, endpoint.base_path + path, http.HttpHeaders(all_headers),
                               io.BytesIO(body) if body is not None else None)
        if signer is not None:
            signer(req)
        state: dict[str, Any] = {"headers": []}
        chunks: list[bytes] = []
        size = [0]

        def on_response(http_stream: Any, status_code: int, headers: Any, **kwargs: Any) -> None:
            state["headers"] = list(headers)

        def on_body(http_stream: Any, chunk: bytes, **kwargs: Any) -> None:
            size[0] += len(chunk)
            if size[0] <= MAX_BODY:
                chunks.append(bytes(chunk))

        stream = conn.request(req, on_response, on_body)
        stream.activate()
        try:
            status = stream.completion_future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise error("AWS_IO_SOCKET_TIMEOUT", "The credentials endpoint did not answer in time.") from None
        if size[0] > MAX_BODY:
            raise error("AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE", "The response is too large.")
        return Response(int(status), state["headers"], b"".join(chunks))
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            _log.debug("closing the credentials connection failed", exc_info=True)
