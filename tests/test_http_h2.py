# ruff: noqa: F811  (pytest fixtures are imported by name)
"""crtpy.http HTTP/2 client against a local asyncio + h2 server (TLS with ALPN, and
cleartext prior knowledge)."""
from __future__ import annotations

import concurrent.futures
import io
import threading

import h2.settings
import pytest
from helpers.certs import pki  # noqa: F401
from helpers.http_servers import H2Server, h1_server, h2_server, h2_tls_server, leak_check, tls_options  # noqa: F401

from crtpy.exceptions import AwsCrtError
from crtpy.http import (
    Http2ClientConnection,
    Http2ClientStream,
    Http2Setting,
    Http2SettingID,
    HttpClientConnection,
    HttpHeaders,
    HttpRequest,
    HttpVersion,
)

TIMEOUT = 10


def collect(conn, request, manual_write=False):
    chunks = []
    responses = []
    stream = conn.request(request, on_response=lambda http_stream, status_code, headers, **kw:
                          responses.append((status_code, headers)),
                          on_body=lambda http_stream, chunk, **kw: chunks.append(chunk),
                          manual_write=manual_write)
    return stream, chunks, responses


def test_alpn_picks_h2_through_http_client_connection(pki, h2_tls_server, leak_check):
    tls = tls_options(pki, ["h2", "http/1.1"])
    conn = HttpClientConnection.new("localhost", h2_tls_server.port, tls_connection_options=tls).result(TIMEOUT)
    assert isinstance(conn, Http2ClientConnection)
    assert conn.version == HttpVersion.Http2
    stream, chunks, responses = collect(conn, HttpRequest("GET", "/size/70000", HttpHeaders([("Host", "localhost")])))
    assert isinstance(stream, Http2ClientStream)
    stream.activate()
    assert stream.completion_future.result(TIMEOUT) == 200
    assert stream.remote_end_stream_future.result(TIMEOUT) is None
    assert b"".join(chunks) == b"b" * 70000
    assert responses[0][0] == 200 and ("content-length", "70000") in responses[0][1]
    req = h2_tls_server.requests[0]
    assert req[":authority"] == "localhost" and req[":scheme"] == "https" and "host" not in req
    conn.close().result(TIMEOUT)


def test_http1_only_alpn_gives_http1(pki, leak_check):
    srv = H2Server(certfile=pki.server_cert, keyfile=pki.server_key, alpn=("http/1.1",))
    try:
        tls = tls_options(pki, ["h2", "http/1.1"])
        with pytest.raises(AwsCrtError) as ei:
            Http2ClientConnection.new("localhost", srv.port, tls_connection_options=tls).result(TIMEOUT)
        assert ei.value.name == "AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL"
    finally:
        srv.stop()


def test_many_concurrent_streams(h2_server, leak_check):
    conn = Http2ClientConnection.new("127.0.0.1", h2_server.port).result(TIMEOUT)
    streams = []
    for i in range(300):
        s, chunks, _ = collect(conn, HttpRequest("GET", f"/size/{i * 10}"))
        s.activate()
        streams.append((i, s, chunks))
    for i, s, chunks in streams:
        assert s.completion_future.result(TIMEOUT) == 200
        assert len(b"".join(chunks)) == i * 10
    assert len(h2_server.connections) == 1
    conn.close().result(TIMEOUT)


def test_body_and_manual_writes(h2_server, leak_check):
    conn = Http2ClientConnection.new("127.0.0.1", h2_server.port).result(TIMEOUT)
    data = bytes(range(256)) * 4000  # larger than the default 64 KiB windows
    s, chunks, _ = collect(conn, HttpRequest("PUT", "/echo", body_stream=io.BytesIO(data)))
    s.activate()
    assert s.completion_future.result(TIMEOUT) == 200
    assert b"".join(chunks) == data

    s, chunks, _ = collect(conn, HttpRequest("POST", "/echo"), manual_write=True)
    s.activate()
    assert s.write_data(io.BytesIO(b"first-")).result(TIMEOUT) is None
    assert s.write_data(io.BytesIO(data)).result(TIMEOUT) is None
    assert not s.completion_future.done()
    assert s.write_data(None, end_stream=True).result(TIMEOUT) is None
    assert s.completion_future.result(TIMEOUT) == 200
    assert b"".join(chunks) == b"first-" + data
    with pytest.raises(AwsCrtError):
        s.write_data(io.BytesIO(b"late")).result(TIMEOUT)

    s, _, _ = collect(conn, HttpRequest("GET", "/size/1"))
    with pytest.raises(AwsCrtError) as ei:
        s.write_data(io.BytesIO(b"x")).result(TIMEOUT)
    assert ei.value.name == "AWS_ERROR_HTTP_MANUAL_WRITE_NOT_ENABLED"
    s.activate()
    s.completion_future.result(TIMEOUT)
    conn.close().result(TIMEOUT)


def test_settings_exchange(leak_check):
    srv = H2Server(settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7,
                             h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
    try:
        got = []
        changed = threading.Condition()

        def on_settings(settings):
            with changed:
                got.append(list(settings))
                changed.notify_all()

        def latest():
            return {s.id: s.value for batch in got for s in batch}

        conn = Http2ClientConnection.new(
            "127.0.0.1", srv.port,
            initial_settings=[Http2Setting(Http2SettingID.MAX_HEADER_LIST_SIZE, 12345),
                              Http2Setting(Http2SettingID.INITIAL_WINDOW_SIZE, 200_000)],
            on_remote_settings_changed=on_settings).result(TIMEOUT)
        # The server sends its preface SETTINGS (h2's defaults) and then a SETTINGS frame
        # with the test's values: each arrives as its own callback.
        with changed:
            assert changed.wait_for(lambda: latest().get(Http2SettingID.MAX_CONCURRENT_STREAMS) == 7, TIMEOUT)
        flat = latest()
        assert flat[Http2SettingID.MAX_CONCURRENT_STREAMS] == 7
        assert flat[Http2SettingID.INITIAL_WINDOW_SIZE] == 100_000
        assert all(isinstance(s, Http2Setting) for batch in got for s in batch)
        # more streams than the server allows at once: they queue, and all complete
        streams = []
        for _ in range(40):
            s, _, _ = collect(conn, HttpRequest("GET", "/size/5"))
            s.activate()
            streams.append(s)
        assert all(s.completion_future.result(TIMEOUT) == 200 for s in streams)
        assert srv.client_settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 12345
        assert srv.client_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 200_000
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


def test_rst_stream_and_goaway(h2_server, leak_check):
    conn = Http2ClientConnection.new("127.0.0.1", h2_server.port).result(TIMEOUT)
    s, _, _ = collect(conn, HttpRequest("GET", "/rst"))
    s.activate()
    with pytest.raises(AwsCrtError) as ei:
        s.completion_future.result(TIMEOUT)
    assert ei.value.name == "AWS_ERROR_HTTP_RST_STREAM_RECEIVED"
    with pytest.raises(AwsCrtError):
        s.remote_end_stream_future.result(TIMEOUT)
    # the connection survives a stream reset
    s, _, _ = collect(conn, HttpRequest("GET", "/size/3"))
    s.activate()
    assert s.completion_future.result(TIMEOUT) == 200
    s, _, _ = collect(conn, HttpRequest("GET", "/goaway"))
    s.activate()
    with pytest.raises(AwsCrtError) as ei:
        s.completion_future.result(TIMEOUT)
    assert ei.value.name == "AWS_ERROR_HTTP_GOAWAY_RECEIVED"
    conn.shutdown_future.result(TIMEOUT)
    assert not conn.is_open()
    with pytest.raises(AwsCrtError) as ei:
        conn.request(HttpRequest("GET", "/"))
    assert ei.value.name == "AWS_ERROR_HTTP_CONNECTION_CLOSED"


def test_manual_stream_window_bounds_download(h2_server, leak_check):
    conn = Http2ClientConnection.new("127.0.0.1", h2_server.port, manual_window_management=True,
                                     initial_window_size=20_000).result(TIMEOUT)
    got = []
    first = threading.Event()

    def on_body(http_stream, chunk, **kw):
        got.append(chunk)
        first.set()

    s = conn.request(HttpRequest("GET", "/size/200000"), on_body=on_body)
    s.activate()
    assert first.wait(TIMEOUT)
    with pytest.raises(concurrent.futures.TimeoutError):
        s.completion_future.result(0.5)
    assert sum(map(len, got)) <= 20_000  # the server cannot send past the window
    while not s.completion_future.done():
        s.update_window(50_000)
        try:
            s.completion_future.result(0.05)
        except concurrent.futures.TimeoutError:
            pass
    assert s.completion_future.result(TIMEOUT) == 200
    assert sum(map(len, got)) == 200_000
    conn.close().result(TIMEOUT)


def test_manual_connection_window(h2_server, leak_check):
    conn = Http2ClientConnection.new("127.0.0.1", h2_server.port, conn_manual_window_management=True).result(TIMEOUT)
    got = []
    s = conn.request(HttpRequest("GET", "/size/150000"), on_body=lambda http_stream, chunk, **kw: got.append(chunk))
    s.activate()
    with pytest.raises(concurrent.futures.TimeoutError):
        s.completion_future.result(0.5)
    assert sum(map(len, got)) <= 65535  # the connection window's initial size
    conn.update_window(200_000)
    assert s.completion_future.result(TIMEOUT) == 200
    assert sum(map(len, got)) == 150_000
    conn.close().result(TIMEOUT)


def test_upload_honours_server_window(leak_check):
    # the server never acknowledges data on /hold: the client must stop at its window.
    # The request starts only once the client has the server's SETTINGS (30,000-byte
    # stream window); before that RFC 9113 lets it use the 65,535-byte default, which
    # the next test covers.
    srv = H2Server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 30_000})
    try:
        seen = threading.Event()

        def on_settings(settings):
            if any(x.id == Http2SettingID.INITIAL_WINDOW_SIZE and x.value == 30_000 for x in settings):
                seen.set()

        conn = Http2ClientConnection.new("127.0.0.1", srv.port,
                                         on_remote_settings_changed=on_settings).result(TIMEOUT)
        assert seen.wait(TIMEOUT)
        s = conn.request(HttpRequest("PUT", "/hold", body_stream=io.BytesIO(b"u" * 50_000)))
        s.activate()
        assert srv.wait_received(30_000, TIMEOUT)
        with pytest.raises(concurrent.futures.TimeoutError):
            s.completion_future.result(0.5)
        assert srv.received_data == 30_000
        assert srv.errors == []
        assert conn.is_open()
        conn.close().result(TIMEOUT)
        with pytest.raises(AwsCrtError):
            s.completion_future.result(TIMEOUT)
    finally:
        srv.stop()


def test_upload_before_server_settings_then_window_shrinks(leak_check):
    # The server's SETTINGS (stream window 30,000) reach the client only after it has
    # sent a request's DATA under the 65,535-byte default, as RFC 9113 allows.  The
    # shrunken window goes negative: the client must send nothing more, and neither side
    # may treat this as a flow-control error.
    srv = H2Server(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 30_000}, hold_preface=True)
    try:
        conn = Http2ClientConnection.new("127.0.0.1", srv.port).result(TIMEOUT)
        s = conn.request(HttpRequest("PUT", "/hold", body_stream=io.BytesIO(b"u" * 50_000)))
        s.activate()
        # the whole 50,000-byte body fits the default window and arrives
        assert srv.wait_received(50_000, TIMEOUT)
        srv.release_preface()
        status = s.completion_future.result(TIMEOUT)
        assert status == 200
        assert srv.received_data == 50_000
        assert srv.errors == []
        # a second upload now sees a window of 30,000 - and the connection window the
        # server never replenishes (65,535 - 50,000 left): it stalls at 15,535 more
        s2 = conn.request(HttpRequest("PUT", "/hold", body_stream=io.BytesIO(b"v" * 50_000)))
        s2.activate()
        assert srv.wait_received(65_535, TIMEOUT)
        with pytest.raises(concurrent.futures.TimeoutError):
            s2.completion_future.result(0.5)
        assert srv.received_data == 65_535
        assert srv.errors == []
        conn.close().result(TIMEOUT)
        with pytest.raises(AwsCrtError):
            s2.completion_future.result(TIMEOUT)
    finally:
        srv.stop()


def test_tls_verification_failure(pki, h2_tls_server, leak_check):
    tls = tls_options(pki, ["h2"], server_name="not-the-server.example")
    with pytest.raises(AwsCrtError) as ei:
        Http2ClientConnection.new("127.0.0.1", h2_tls_server.port, tls_connection_options=tls).result(TIMEOUT)
    assert "TLS" in ei.value.name


def test_settings_validation():
    with pytest.raises(ValueError):
        Http2Setting(Http2SettingID.MAX_FRAME_SIZE, 100)
    with pytest.raises(ValueError):
        Http2Setting(Http2SettingID.ENABLE_PUSH, 2)
    assert str(Http2Setting(Http2SettingID.ENABLE_PUSH, 1)) == "Http2Setting(ENABLE_PUSH=1)"
