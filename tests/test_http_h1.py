# ruff: noqa: F811  (pytest fixtures are imported by name)
"""crtpy.http HTTP/1.1 client against local servers (http.server and scripted sockets)."""
from __future__ import annotations

import concurrent.futures
import io
import os
import socket
import ssl
import struct
import threading
import time

import pytest
from conftest import free_port
from helpers.certs import pki  # noqa: F401
from helpers.http_servers import RawServer, h1_server, leak_check, tls_options  # noqa: F401

from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpClientConnection, HttpClientStream, HttpHeaders, HttpRequest, HttpVersion
from crtpy.io import InputStream

TIMEOUT = 10


def connect(port: int, **kw):
    return HttpClientConnection.new("127.0.0.1", port, **kw).result(TIMEOUT)


class Recorder:
    def __init__(self) -> None:
        self.responses = []
        self.chunks = []
        self.threads = set()
        self.lock = threading.Lock()

    def on_response(self, http_stream, status_code, headers, **kwargs):
        self.threads.add(threading.current_thread().name)
        self.responses.append((status_code, headers))

    def on_body(self, http_stream, chunk, **kwargs):
        self.threads.add(threading.current_thread().name)
        self.chunks.append(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def run(conn, req, rec=None):
    rec = rec or Recorder()
    stream = conn.request(req, rec.on_response, rec.on_body)
    assert isinstance(stream, HttpClientStream)
    stream.activate()
    status = stream.completion_future.result(TIMEOUT)
    return stream, status, rec


def req(method="GET", path="/", headers=None, body=None):
    h = HttpHeaders([("Host", "localhost"), *(headers or [])])
    return HttpRequest(method, path, h, body)


def test_get_keepalive_reuses_one_connection(h1_server, leak_check):
    conn = connect(h1_server.port)
    assert conn.version == HttpVersion.Http1_1
    assert conn.is_open()
    assert conn.host_name == "127.0.0.1" and conn.port == h1_server.port
    for size in (0, 1, 100_000, 3_000_000):
        stream, status, rec = run(conn, req(path=f"/size/{size}"))
        assert status == 200 == stream.response_status_code
        assert rec.body == b"a" * size
        assert rec.responses[0][0] == 200
        assert ("Content-Length", str(size)) in rec.responses[0][1]
        # callbacks never run on an event-loop thread
        assert not any(t.startswith("crtpy-loop") for t in rec.threads)
    ports = {r[3] for r in h1_server.requests}
    assert len(ports) == 1, "keep-alive should reuse the connection"
    conn.close().result(TIMEOUT)
    assert not conn.is_open()


def test_put_post_bodies_from_bytes_file_and_stream(h1_server, tmp_path, leak_check):
    conn = connect(h1_server.port)
    data = os.urandom(700_001)
    # BytesIO with an explicit Content-Length
    _, status, rec = run(conn, req("PUT", "/echo", [("Content-Length", str(len(data)))], io.BytesIO(data)))
    assert status == 200 and rec.body == data
    # a real file, length found by seeking
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        _, status, rec = run(conn, req("POST", "/echo", body=f))
    assert status == 200 and rec.body == data
    # an InputStream wrapping a non-seekable stream: sent chunked
    class Unseekable(io.RawIOBase):
        def __init__(self, payload):
            self._b = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, b):
            return self._b.readinto(b)

    _, status, rec = run(conn, req("POST", "/echo", body=InputStream(Unseekable(data))))
    assert status == 200 and rec.body == data
    assert h1_server.bodies == [data, data, data]
    conn.close().result(TIMEOUT)


def test_chunked_request_and_response(h1_server, leak_check):
    conn = connect(h1_server.port)
    data = b"0123456789" * 50_000
    _, status, rec = run(conn, req("PUT", "/echo", [("Transfer-Encoding", "chunked")], io.BytesIO(data)))
    assert status == 200 and rec.body == data
    _, status, rec = run(conn, req(path="/chunked/512000"))
    assert status == 200 and rec.body == bytes(range(256)) * 2000
    conn.close().result(TIMEOUT)


def test_head_and_multi_value_headers(h1_server, leak_check):
    conn = connect(h1_server.port)
    _, status, rec = run(conn, req("HEAD", "/size/12345"))
    assert status == 200 and rec.body == b""
    assert ("Content-Length", "12345") in rec.responses[0][1]
    # the connection is still usable after a HEAD
    _, status, rec = run(conn, req(path="/headers", headers=[("X-Test", "v1")]))
    assert b"x-test: v1" in rec.body
    assert [v for k, v in rec.responses[0][1] if k == "X-Multi"] == ["1", "2"]
    conn.close().result(TIMEOUT)


def test_expect_100_continue(h1_server, leak_check):
    conn = connect(h1_server.port)
    data = b"x" * 5000
    _, status, rec = run(conn, req("PUT", "/echo", [("Expect", "100-continue"),
                                                    ("Content-Length", str(len(data)))], io.BytesIO(data)))
    assert status == 200 and rec.body == data
    # informational responses are not reported through on_response
    assert [r[0] for r in rec.responses] == [200]
    conn.close().result(TIMEOUT)


def test_expect_rejected_body_not_sent(leak_check):
    extra = []
    checked = threading.Event()

    def script(c, head):
        c.sendall(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        c.settimeout(0.3)  # anything the client sends now would be the body it must hold back
        try:
            extra.append(c.recv(100))
        except OSError:
            extra.append(b"")
        checked.set()

    srv = RawServer(script)
    try:
        conn = connect(srv.port)
        _, status, _ = run(conn, req("PUT", "/x", [("Expect", "100-continue"),
                                                   ("Content-Length", "4")], io.BytesIO(b"body")))
        assert status == 417
        conn.shutdown_future.exception(TIMEOUT)  # the connection is not reused after this
        assert checked.wait(TIMEOUT)
        assert b"body" not in srv.received[0] and b"body" not in extra[0]
    finally:
        srv.stop()


def test_server_closing_mid_body_is_an_error(leak_check):
    srv = RawServer(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"))
    try:
        conn = connect(srv.port)
        rec = Recorder()
        stream = conn.request(req(), rec.on_response, rec.on_body)
        stream.activate()
        with pytest.raises(AwsCrtError) as ei:
            stream.completion_future.result(TIMEOUT)
        assert ei.value.name == "AWS_IO_SOCKET_CLOSED"
        assert rec.body == b"short"
        with pytest.raises(AwsCrtError):
            conn.shutdown_future.result(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


@pytest.mark.parametrize("response", [
    b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n",
])
def test_malformed_response(response, leak_check):
    def script(c, head):
        c.sendall(response)
        time.sleep(0.5)  # keep the socket open: the client must close it, not hang

    srv = RawServer(script)
    try:
        conn = connect(srv.port)
        stream = conn.request(req())
        stream.activate()
        with pytest.raises(AwsCrtError) as ei:
            stream.completion_future.result(TIMEOUT)
        assert ei.value.name == "AWS_ERROR_HTTP_PROTOCOL_ERROR"
        with pytest.raises(AwsCrtError):
            conn.shutdown_future.result(TIMEOUT)
        assert not conn.is_open()
        with pytest.raises(AwsCrtError) as ei:
            conn.request(req())
        assert ei.value.name == "AWS_ERROR_HTTP_CONNECTION_CLOSED"
    finally:
        srv.stop()


def test_body_until_eof_and_connection_close(leak_check):
    srv = RawServer(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall-of-it"))
    try:
        conn = connect(srv.port)
        _, status, rec = run(conn, req())
        assert status == 200 and rec.body == b"all-of-it"
        conn.shutdown_future.result(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_manual_window_bounds_reading(h1_server, leak_check):
    conn = connect(h1_server.port, manual_window_management=True, initial_window_size=64 * 1024,
                   read_buffer_capacity=16 * 1024)
    rec = Recorder()
    got = threading.Event()
    total = 4_000_000

    def on_body(http_stream, chunk, **kwargs):
        rec.chunks.append(chunk)
        got.set()

    stream = conn.request(req(path=f"/size/{total}"), on_body=on_body)
    stream.activate()
    got.wait(TIMEOUT)
    # without window updates the body stalls well short of the end
    with pytest.raises(concurrent.futures.TimeoutError):
        stream.completion_future.result(0.5)
    received = len(rec.body)
    assert received < 64 * 1024 + 64 * 1024
    while not stream.completion_future.done():
        stream.update_window(256 * 1024)
        try:
            stream.completion_future.result(0.05)
        except concurrent.futures.TimeoutError:
            pass
    assert stream.completion_future.result(TIMEOUT) == 200
    assert len(rec.body) == total
    conn.close().result(TIMEOUT)


def test_close_fails_pending_stream(leak_check):
    srv = RawServer(lambda c, h: time.sleep(1))
    try:
        conn = connect(srv.port)
        stream = conn.request(req())
        stream.activate()
        conn.close().result(TIMEOUT)
        with pytest.raises(AwsCrtError) as ei:
            stream.completion_future.result(TIMEOUT)
        assert ei.value.name in ("AWS_ERROR_HTTP_CONNECTION_CLOSED", "AWS_IO_SOCKET_CLOSED")
    finally:
        srv.stop()


def test_connection_refused(leak_check):
    port = free_port()
    with pytest.raises(AwsCrtError) as ei:
        HttpClientConnection.new("127.0.0.1", port).result(TIMEOUT)
    assert ei.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"


def test_invalid_arguments():
    with pytest.raises(ValueError):
        HttpClientConnection.new("127.0.0.1", 80, manual_window_management=True)
    with pytest.raises(TypeError):
        HttpRequest(body_stream=object())
    with pytest.raises(TypeError):
        HttpClientConnection.new(None, 80)  # type: ignore[arg-type]


@pytest.mark.parametrize("script_bytes", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
])
def test_same_outcome_as_reference(script_bytes, leak_check):
    """Status, callback arguments, body and error name agree with awscrt."""
    ref = pytest.importorskip("awscrt.http")
    import crtpy.http as ours

    srv = RawServer(lambda c, h: c.sendall(script_bytes))

    def outcome(mod):
        conn = mod.HttpClientConnection.new("127.0.0.1", srv.port).result(TIMEOUT)
        events = []
        stream = conn.request(mod.HttpRequest("GET", "/", mod.HttpHeaders([("Host", "x")])),
                              on_response=lambda **kw: events.append(("response", kw["status_code"], sorted(kw))),
                              on_body=lambda **kw: events.append(("body", bytes(kw["chunk"]), sorted(kw))))
        stream.activate()
        try:
            result = stream.completion_future.result(TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - compared below
            result = getattr(exc, "name", type(exc).__name__)
        conn.close()
        conn.shutdown_future.exception(TIMEOUT)
        return result, events

    try:
        assert outcome(ours) == outcome(ref)
    finally:
        srv.stop()


def test_requests_from_many_threads_share_one_connection(h1_server, leak_check):
    # Bodiless requests on an idle plain-TCP connection are written by the calling
    # thread itself; requests with bodies go through the loop.  Mixed, from several
    # threads at once, every exchange must still get its own response.
    conn = connect(h1_server.port)
    assert conn._impl._direct is not None  # the direct-send path is in use here
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                size = (k * 10 + i) % 7 * 1000
                if i % 5 == 0:
                    _, status, rec = run(conn, req("PUT", "/echo", body=io.BytesIO(b"x" * size)))
                    assert status == 200 and rec.body == b"x" * size
                else:
                    _, status, rec = run(conn, req(path=f"/size/{size}"))
                    assert status == 200 and rec.body == b"a" * size
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert len({r[3] for r in h1_server.requests}) == 1
    conn.close().result(TIMEOUT)
    assert conn._impl._direct is None


def test_request_after_server_dropped_idle_connection_fails(leak_check):
    # the server answers once, then closes the keep-alive connection: the next request
    # (sent before or after the client notices) fails, it never hangs
    srv = RawServer(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    try:
        conn = connect(srv.port)
        _, status, rec = run(conn, req())
        assert status == 200 and rec.body == b"ok"
        with pytest.raises(AwsCrtError):
            stream = conn.request(req())
            stream.activate()
            stream.completion_future.result(TIMEOUT)
        conn.shutdown_future.exception(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_large_bodies_then_small_on_one_connection(h1_server, leak_check):
    # large bodies are read straight from the socket; the connection is parsed normally
    # again right after each one
    conn = connect(h1_server.port)
    for size in (3_000_000, 10, 700_000, 0, 2_500_001, 5):
        _, status, rec = run(conn, req(path=f"/size/{size}"))
        assert status == 200 and rec.body == b"a" * size
    assert len({r[3] for r in h1_server.requests}) == 1
    conn.close().result(TIMEOUT)


@pytest.mark.parametrize("reset", [False, True])
def test_server_closing_mid_large_body_is_an_error(reset, leak_check):
    part = os.urandom(700_000)

    def script(c, head):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n" + part)
        if reset:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    srv = RawServer(script)
    try:
        conn = connect(srv.port)
        rec = Recorder()
        stream = conn.request(req(), rec.on_response, rec.on_body)
        stream.activate()
        with pytest.raises(AwsCrtError) as ei:
            stream.completion_future.result(TIMEOUT)
        assert ei.value.name == "AWS_IO_SOCKET_CLOSED"
        assert part.startswith(rec.body)
        if not reset:
            assert rec.body == part
        conn.shutdown_future.exception(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_tls_connection_never_writes_around_tls(pki, leak_check):
    # direct writes from the calling thread are for plain TCP only: under TLS every
    # request goes through the loop (and the TLS layer), also on a reused connection
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.set_alpn_protocols(["http/1.1"])
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    heads: list[bytes] = []

    def serve() -> None:
        raw, _ = lsock.accept()
        with ctx.wrap_socket(raw, server_side=True) as c:
            c.settimeout(TIMEOUT)
            buf = b""
            for i in range(3):
                while b"\r\n\r\n" not in buf:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                heads.append(head)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(i).encode())
            try:
                while c.recv(65536):  # until the client closes
                    pass
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        conn = HttpClientConnection.new("localhost", port,
                                        tls_connection_options=tls_options(pki, ["http/1.1"])).result(TIMEOUT)
        assert conn._impl._direct is None
        for i in range(3):
            _, status, rec = run(conn, req(path=f"/tls/{i}"))
            assert status == 200 and rec.body == str(i).encode()
        assert [h.split(b"\r\n")[0] for h in heads] == [f"GET /tls/{i} HTTP/1.1".encode() for i in range(3)]
        conn.close().result(TIMEOUT)
    finally:
        lsock.close()
        t.join(TIMEOUT)
