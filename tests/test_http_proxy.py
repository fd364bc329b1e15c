# ruff: noqa: F811  (pytest fixtures are imported by name)
"""crtpy.http through a local tinyproxy: forwarding, CONNECT tunnels, Basic auth, TLS to
an HTTPS origin through the tunnel; and proxy settings from the environment."""
from __future__ import annotations

import pytest
from conftest import free_port, require_binary
from helpers.certs import pki  # noqa: F401
from helpers.http_servers import Tinyproxy, h1_server, h2_tls_server, leak_check, tls_options  # noqa: F401

from crtpy._http.proxy import env_proxy_options
from crtpy.exceptions import AwsCrtError
from crtpy.http import (
    Http2ClientConnection,
    HttpClientConnection,
    HttpHeaders,
    HttpProxyAuthenticationType,
    HttpProxyConnectionType,
    HttpProxyOptions,
    HttpRequest,
)

TIMEOUT = 10


@pytest.fixture
def tinyproxy(tmp_path):
    binary = require_binary("tinyproxy")
    proxy = Tinyproxy(binary, str(tmp_path), free_port())
    yield proxy
    proxy.stop()


@pytest.fixture
def tinyproxy_auth(tmp_path):
    binary = require_binary("tinyproxy")
    proxy = Tinyproxy(binary, str(tmp_path), free_port(), basic_auth=("alice", "s3cret"))
    yield proxy
    proxy.stop()


def close(conn):
    # a forwarding proxy may already have closed the connection: that is not an error here
    conn.close().exception(TIMEOUT)
    assert not conn.is_open()


def get(conn, path, host):
    chunks = []
    s = conn.request(HttpRequest("GET", path, HttpHeaders([("Host", host)])),
                     on_body=lambda http_stream, chunk, **kw: chunks.append(chunk))
    s.activate()
    return s.completion_future.result(TIMEOUT), b"".join(chunks)


@pytest.mark.parametrize("ctype", [HttpProxyConnectionType.Forwarding, HttpProxyConnectionType.Legacy,
                                   HttpProxyConnectionType.Tunneling])
def test_plain_origin_through_proxy(tinyproxy, h1_server, ctype, leak_check):
    proxy = HttpProxyOptions("127.0.0.1", tinyproxy.port, connection_type=ctype)
    conn = HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=proxy).result(TIMEOUT)
    host = f"127.0.0.1:{h1_server.port}"
    status, body = get(conn, "/size/5000", host)
    assert status == 200 and body == b"a" * 5000
    if ctype == HttpProxyConnectionType.Tunneling:  # tinyproxy closes forwarded connections
        assert get(conn, "/size/7", host) == (200, b"a" * 7)
    assert h1_server.requests[0][1] == "/size/5000"
    close(conn)


def test_basic_auth_accepted_and_rejected(tinyproxy_auth, h1_server, leak_check):
    host = f"127.0.0.1:{h1_server.port}"
    good = HttpProxyOptions("127.0.0.1", tinyproxy_auth.port, auth_type=HttpProxyAuthenticationType.Basic,
                            auth_username="alice", auth_password="s3cret",
                            connection_type=HttpProxyConnectionType.Tunneling)
    conn = HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=good).result(TIMEOUT)
    assert get(conn, "/size/10", host) == (200, b"a" * 10)
    close(conn)

    fwd = HttpProxyOptions("127.0.0.1", tinyproxy_auth.port, auth_type=HttpProxyAuthenticationType.Basic,
                           auth_username="alice", auth_password="s3cret",
                           connection_type=HttpProxyConnectionType.Forwarding)
    conn = HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=fwd).result(TIMEOUT)
    assert get(conn, "/size/10", host) == (200, b"a" * 10)
    close(conn)

    bad = HttpProxyOptions("127.0.0.1", tinyproxy_auth.port, auth_type=HttpProxyAuthenticationType.Basic,
                           auth_username="alice", auth_password="wrong",
                           connection_type=HttpProxyConnectionType.Tunneling)
    with pytest.raises(AwsCrtError) as ei:
        HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=bad).result(TIMEOUT)
    assert ei.value.name == "AWS_ERROR_HTTP_PROXY_CONNECT_FAILED"
    assert "wrong" not in repr(bad)

    fwd_bad = HttpProxyOptions("127.0.0.1", tinyproxy_auth.port,
                               connection_type=HttpProxyConnectionType.Forwarding)
    conn = HttpClientConnection.new("127.0.0.1", h1_server.port, proxy_options=fwd_bad).result(TIMEOUT)
    status, _ = get(conn, "/size/10", host)
    assert status == 407
    close(conn)


def test_tls_origin_through_tunnel(pki, tinyproxy, h2_tls_server, leak_check):
    proxy = HttpProxyOptions("127.0.0.1", tinyproxy.port)  # Legacy + TLS origin = tunnel
    tls = tls_options(pki, ["h2"])
    conn = Http2ClientConnection.new("localhost", h2_tls_server.port, tls_connection_options=tls,
                                     proxy_options=proxy).result(TIMEOUT)
    status, body = get(conn, "/size/1234", "localhost")
    assert status == 200 and body == b"b" * 1234
    close(conn)


def test_forwarding_with_tls_origin_is_rejected(pki, tinyproxy, h2_tls_server, leak_check):
    proxy = HttpProxyOptions("127.0.0.1", tinyproxy.port, connection_type=HttpProxyConnectionType.Forwarding)
    with pytest.raises((AwsCrtError, ValueError)):
        HttpClientConnection.new("localhost", h2_tls_server.port, tls_connection_options=tls_options(pki),
                                 proxy_options=proxy).result(TIMEOUT)


def test_env_proxy_options():
    env = {"HTTP_PROXY": "http://user:p%40ss@proxy.local:3128", "https_proxy": "proxy2.local:8080",
           "NO_PROXY": "localhost,.internal.example,10.0.0.0/8,127.0.0.1"}
    opts = env_proxy_options("example.com", 80, False, env)
    assert (opts.host_name, opts.port) == ("proxy.local", 3128)
    assert opts.auth_type == HttpProxyAuthenticationType.Basic
    assert (opts.auth_username, opts.auth_password) == ("user", "p@ss")
    assert opts.connection_type == HttpProxyConnectionType.Forwarding
    opts = env_proxy_options("example.com", 443, True, env)
    assert (opts.host_name, opts.port, opts.connection_type) == ("proxy2.local", 8080, HttpProxyConnectionType.Tunneling)
    for host in ("localhost", "a.internal.example", "10.1.2.3", "127.0.0.1"):
        assert env_proxy_options(host, 80, False, env) is None
    assert env_proxy_options("example.com", 80, False, {}) is None
