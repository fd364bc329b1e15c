# ruff: noqa: F811  (pytest fixtures are imported by name)
"""crtpy.aio.http driven from asyncio.run: HTTP/1.1, HTTP/2 (TLS and cleartext), full-duplex
bodies, errors, proxies."""
from __future__ import annotations

import asyncio
import io
import time

import pytest
from conftest import free_port, require_binary
from helpers.certs import pki  # noqa: F401
from helpers.http_servers import RawServer, Tinyproxy, h1_server, h2_server, h2_tls_server, leak_check, tls_options  # noqa: F401

from crtpy.aio.http import (
    AIOHttp2ClientConnection,
    AIOHttp2ClientStream,
    AIOHttpClientConnection,
    AIOHttpClientConnectionUnified,
    AIOHttpClientStream,
)
from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpHeaders, HttpProxyConnectionType, HttpProxyOptions, HttpRequest, HttpVersion

TIMEOUT = 10


async def read_all(stream) -> bytes:
    parts = []
    while True:
        chunk = await stream.get_next_response_chunk()
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def test_http1_get_put_keepalive(h1_server, leak_check):
    async def main():
        conn = await AIOHttpClientConnection.new("127.0.0.1", h1_server.port)
        assert conn.version == HttpVersion.Http1_1
        for size in (0, 10, 1_000_000):
            s = conn.request(HttpRequest("GET", f"/size/{size}", HttpHeaders([("Host", "x")])))
            assert isinstance(s, AIOHttpClientStream)
            assert await s.get_response_status_code() == 200
            headers = await s.get_response_headers()
            assert ("Content-Length", str(size)) in headers
            assert await read_all(s) == b"a" * size
            assert await s.wait_for_completion() == 200
        data = b"q" * 300_000
        s = conn.request(HttpRequest("PUT", "/echo", HttpHeaders([("Host", "x")]), io.BytesIO(data)))
        assert await read_all(s) == data
        assert await s.wait_for_completion() == 200
        await conn.close()
        assert not conn.is_open()

    run(main())
    assert len({r[3] for r in h1_server.requests}) == 1


def test_unified_picks_protocol(pki, h1_server, h2_tls_server, leak_check):
    async def main():
        c1 = await AIOHttpClientConnectionUnified.new("127.0.0.1", h1_server.port)
        assert isinstance(c1, AIOHttpClientConnection)
        c2 = await AIOHttpClientConnectionUnified.new("localhost", h2_tls_server.port,
                                                      tls_connection_options=tls_options(pki, ["h2", "http/1.1"]))
        assert isinstance(c2, AIOHttp2ClientConnection) and c2.version == HttpVersion.Http2
        for c in (c1, c2):
            s = c.request(HttpRequest("GET", "/size/321", HttpHeaders([("Host", "localhost")])))
            assert len(await read_all(s)) == 321
            assert await s.wait_for_completion() == 200
            await c.close()

    run(main())


def test_http2_concurrent_and_full_duplex(h2_server, leak_check):
    async def body():
        for i in range(20):
            yield b"piece-%d;" % i
            await asyncio.sleep(0)

    async def main():
        conn = await AIOHttp2ClientConnection.new("127.0.0.1", h2_server.port)
        streams = [conn.request(HttpRequest("GET", f"/size/{i}")) for i in range(200)]
        assert all(isinstance(s, AIOHttp2ClientStream) for s in streams)
        bodies = await asyncio.gather(*(read_all(s) for s in streams))
        assert [len(b) for b in bodies] == list(range(200))
        assert set(await asyncio.gather(*(s.wait_for_completion() for s in streams))) == {200}
        s = conn.request(HttpRequest("POST", "/echo"), request_body_generator=body())
        assert await read_all(s) == b"".join(b"piece-%d;" % i for i in range(20))
        assert await s.wait_for_completion() == 200
        s = conn.request(HttpRequest("GET", "/rst"))
        with pytest.raises(AwsCrtError) as ei:
            await s.wait_for_completion()
        assert ei.value.name == "AWS_ERROR_HTTP_RST_STREAM_RECEIVED"
        assert await read_all(s) == b""
        conn.update_window(1000)
        await conn.close()

    run(main())


def test_errors(leak_check):
    srv = RawServer(lambda c, h: (c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial"),
                                  time.sleep(0.05)))
    port = free_port()

    async def main():
        with pytest.raises(AwsCrtError) as ei:
            await AIOHttpClientConnection.new("127.0.0.1", port)
        assert ei.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
        conn = await AIOHttpClientConnection.new("127.0.0.1", srv.port)
        s = conn.request(HttpRequest("GET", "/", HttpHeaders([("Host", "x")])))
        assert await s.get_response_status_code() == 200
        assert await read_all(s) == b"partial"
        with pytest.raises(AwsCrtError) as ei:
            await s.wait_for_completion()
        assert ei.value.name == "AWS_IO_SOCKET_CLOSED"
        await conn.close()

    try:
        run(main())
    finally:
        srv.stop()


def test_through_tinyproxy_tunnel(tmp_path, h1_server, leak_check):
    proxy = Tinyproxy(require_binary("tinyproxy"), str(tmp_path), free_port())
    try:
        async def main():
            opts = HttpProxyOptions("127.0.0.1", proxy.port, connection_type=HttpProxyConnectionType.Tunneling)
            conn = await AIOHttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=opts)
            s = conn.request(HttpRequest("GET", "/size/99", HttpHeaders([("Host", "x")])))
            assert await read_all(s) == b"a" * 99
            assert await s.wait_for_completion() == 200
            await conn.close()

        run(main())
    finally:
        proxy.stop()
