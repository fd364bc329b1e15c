# ruff: noqa: F811  (pytest fixtures are imported by name)
"""TLS to the proxy itself (``HttpProxyOptions.tls_connection_options``).

tinyproxy speaks plain HTTP only, so a small TLS terminator of our own stands in front
of it: the client's TLS session ends at the terminator, which relays the bytes to
tinyproxy.  Covered: forwarding over a TLS proxy connection, a CONNECT tunnel with TLS to
the origin *inside* the TLS session to the proxy, and the proxy's certificate being
verified by default."""
from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

import pytest
from conftest import free_port, require_binary
from helpers.certs import pki  # noqa: F401
from helpers.http_servers import Tinyproxy, h1_server, h2_tls_server, leak_check, tls_options  # noqa: F401

from crtpy.exceptions import AwsCrtError
from crtpy.http import (
    Http2ClientConnection,
    HttpClientConnection,
    HttpHeaders,
    HttpProxyConnectionType,
    HttpProxyOptions,
    HttpRequest,
)

TIMEOUT = 10


class TlsTerminator:
    """Accepts TLS on loopback and relays the plaintext to ``(127.0.0.1, upstream)``."""

    def __init__(self, certfile: str, keyfile: str, upstream: int) -> None:
        self.upstream = upstream
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.loop = asyncio.new_event_loop()
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(TIMEOUT):
            raise RuntimeError("TLS terminator did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.ctx))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self.writers.append(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            for w in self.writers:  # the relays end when their sockets close
                w.transport.abort()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)


@pytest.fixture
def tls_proxy(tmp_path, pki):
    binary = require_binary("tinyproxy")
    proxy = Tinyproxy(binary, str(tmp_path), free_port())
    front = TlsTerminator(pki.server_cert, pki.server_key, proxy.port)
    yield front
    front.stop()
    proxy.stop()


def proxy_options(port: int, tls: Any, ctype: HttpProxyConnectionType) -> HttpProxyOptions:
    return HttpProxyOptions("localhost", port, tls_connection_options=tls, connection_type=ctype)


def get(conn: Any, path: str, host: str) -> tuple[int, bytes]:
    chunks: list[bytes] = []
    s = conn.request(HttpRequest("GET", path, HttpHeaders([("Host", host)])),
                     on_body=lambda http_stream, chunk, **kw: chunks.append(bytes(chunk)))
    s.activate()
    return s.completion_future.result(TIMEOUT), b"".join(chunks)


@pytest.mark.parametrize("ctype", [HttpProxyConnectionType.Forwarding, HttpProxyConnectionType.Tunneling])
def test_plain_origin_through_tls_proxy(pki, tls_proxy, h1_server, ctype, leak_check):
    opts = proxy_options(tls_proxy.port, tls_options(pki), ctype)
    conn = HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=opts).result(TIMEOUT)
    host = f"127.0.0.1:{h1_server.port}"
    assert get(conn, "/size/3000", host) == (200, b"a" * 3000)
    assert tls_proxy.accepted == 1
    assert h1_server.requests[0][1] == "/size/3000"
    conn.close().exception(TIMEOUT)


def test_tls_origin_inside_tls_to_proxy(pki, tls_proxy, h2_tls_server, leak_check):
    # TLS to the proxy, CONNECT, then a second TLS session (to the origin) inside the first.
    opts = proxy_options(tls_proxy.port, tls_options(pki), HttpProxyConnectionType.Tunneling)
    conn = Http2ClientConnection.new("localhost", h2_tls_server.port, tls_connection_options=tls_options(pki, ["h2"]),
                                     proxy_options=opts).result(TIMEOUT)
    for size in (17, 100_000):
        assert get(conn, f"/size/{size}", "localhost") == (200, b"b" * size)
    assert tls_proxy.accepted == 1
    conn.close().result(TIMEOUT)


def test_tls_proxy_certificate_is_verified(pki, tls_proxy, h1_server, leak_check):
    from crtpy.io import ClientTlsContext, TlsContextOptions

    opts = TlsContextOptions()
    opts.override_default_trust_store_from_path(None, pki.other_ca_cert)  # not the proxy's CA
    untrusted = ClientTlsContext(opts).new_connection_options()
    untrusted.set_server_name("localhost")
    proxy = proxy_options(tls_proxy.port, untrusted, HttpProxyConnectionType.Tunneling)
    with pytest.raises(AwsCrtError) as ei:
        HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=proxy).result(TIMEOUT)
    assert ei.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
    assert h1_server.requests == []
