"""crtpy.websocket against a real ``websockets`` server on 127.0.0.1 (plain, TLS, proxy)."""
from __future__ import annotations

import base64
import gc
import os
import threading

import pytest
from conftest import free_port, require_binary
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.ws_server import Recorder, WsServer, client_tls_options, server_ssl_context

import crtpy.websocket as W
from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpProxyOptions, HttpRequest
from crtpy.io import ClientTlsContext, TlsContextOptions


@pytest.fixture
def server():
    with WsServer() as srv:
        yield srv


@pytest.fixture
def client(leak_check):
    rec = Recorder(W)
    yield rec
    rec.close_and_release()


tls_options = client_tls_options


# ------------------------------------------------------------------ handshake request ----
def test_create_handshake_request():
    req = W.create_handshake_request(host="example.com", path="/mqtt?x=1")
    assert isinstance(req, HttpRequest)
    assert req.method == "GET" and req.path == "/mqtt?x=1"
    h = req.headers
    assert h.get("Host") == "example.com"
    assert h.get("Upgrade").lower() == "websocket"
    assert h.get("Connection").lower() == "upgrade"
    assert h.get("Sec-WebSocket-Version") == "13"
    key = h.get("Sec-WebSocket-Key")
    assert len(base64.b64decode(key, validate=True)) == 16
    assert W.create_handshake_request(host="x").headers.get("Sec-WebSocket-Key") != key
    assert W.create_handshake_request(host="x").path == "/"


def test_opcode_and_frame_helpers():
    assert [int(o) for o in W.Opcode] == [0, 1, 2, 8, 9, 10]
    assert [o.is_data_frame() for o in W.Opcode] == [True, True, True, False, False, False]
    assert W.IncomingFrame(W.Opcode.PING, 3, True).is_data_frame() is False
    assert W.MAX_PAYLOAD_LENGTH == 2**63 - 1


@pytest.mark.parametrize("kwargs, exc", [
    ({"manage_read_window": True}, ValueError),
    ({"manage_read_window": True, "initial_read_window": -1}, ValueError),
    ({"handshake_request": "bare"}, ValueError),
    ({"handshake_request": "GET /"}, TypeError),
    ({"on_connection_setup": None}, TypeError),
    ({"on_incoming_frame_begin": 5}, TypeError),
    ({"port": 70000}, ValueError),
])
def test_connect_argument_errors(kwargs, exc, leak_check):
    args = {"host": "127.0.0.1", "port": 1, "handshake_request": W.create_handshake_request(host="h"),
            "on_connection_setup": lambda d: None}
    args.update(kwargs)
    if args["handshake_request"] == "bare":
        args["handshake_request"] = HttpRequest("GET", "/")  # no upgrade headers
    with pytest.raises(exc):
        W.connect(**args)


def test_post_handshake_request_rejected(leak_check):
    req = W.create_handshake_request(host="h")
    req.method = "POST"
    with pytest.raises(ValueError, match="GET"):
        W.connect(host="127.0.0.1", port=1, handshake_request=req, on_connection_setup=lambda d: None)


def test_connection_refused(client):
    d = client.connect(free_port()).wait_setup()
    assert isinstance(d.exception, AwsCrtError)
    assert d.exception.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    assert d.websocket is None and d.handshake_response_status is None
    assert not client.shutdown_done.wait(0.2), "no shutdown callback after a failed setup"


# ------------------------------------------------------------------ echo -----------------
def test_echo_text_and_binary(server, client):
    ws = client.connect(server.port).wait_open()
    d = client.setup_data
    assert d.handshake_response_status == 101
    assert any(k.lower() == "sec-websocket-accept" for k, _ in d.handshake_response_headers)
    assert d.handshake_response_body is None
    ws.send_frame(W.Opcode.TEXT, "héllo wörld")
    assert client.next_data_message() == ("TEXT", "héllo wörld".encode())
    ws.send_frame(W.Opcode.BINARY, b"\x00\x01\xff")
    assert client.next_data_message() == ("BINARY", b"\x00\x01\xff")
    ws.send_frame(W.Opcode.BINARY, "text as binary")
    assert client.next_data_message() == ("BINARY", b"text as binary")
    ws.send_frame(W.Opcode.BINARY, memoryview(bytearray(b"abcdef"))[1:4])
    assert client.next_data_message() == ("BINARY", b"bcd")
    ws.send_frame(W.Opcode.TEXT)  # None: empty payload
    assert client.next_data_message() == ("TEXT", b"")
    # every callback ran on a crtpy callback thread, never a loop thread
    assert client.callback_threads and all(n.startswith("crtpy-callback") for n in client.callback_threads)


def test_send_complete_callbacks_in_order(server, client):
    ws = client.connect(server.port).wait_open()
    order = []
    done = threading.Event()
    n = 50

    def make(i):
        def cb(d):
            order.append((i, d.exception))
            if i == n - 1:
                done.set()
        return cb

    for i in range(n):
        ws.send_frame(W.Opcode.BINARY, bytes([i]) * 1000, on_complete=make(i))
    assert done.wait(10)
    assert order == [(i, None) for i in range(n)]
    for i in range(n):
        assert client.next_data_message() == ("BINARY", bytes([i]) * 1000)


def test_send_frame_argument_errors(server, client):
    ws = client.connect(server.port).wait_open()
    with pytest.raises(ValueError):
        ws.send_frame(7, b"x")
    with pytest.raises(TypeError):
        ws.send_frame(W.Opcode.TEXT, 12)
    with pytest.raises(ValueError):
        ws.increment_read_window(-1)
    ws.increment_read_window(10)  # no-op without manage_read_window
    ws.send_frame(W.Opcode.TEXT, "still fine")
    assert client.next_data_message() == ("TEXT", b"still fine")


def test_stream_payload(server, client):
    import io

    client.connect(server.port).wait_open()
    data = os.urandom(300_000)
    assert client.send_and_wait(W.Opcode.BINARY, io.BytesIO(data)).exception is None
    assert client.next_data_message() == ("BINARY", data)


# ------------------------------------------------------------------ fragmentation --------
def test_send_fragmented_message(server, client):
    ws = client.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, "frag", fin=False)
    ws.send_frame(W.Opcode.PING, b"in between")  # control frames may interleave
    ws.send_frame(W.Opcode.CONTINUATION, "men", fin=False)
    ws.send_frame(W.Opcode.CONTINUATION, "ted", fin=True)
    assert client.next_data_message() == ("TEXT", b"fragmented")


def test_receive_fragmented_message(server, client):
    ws = client.connect(server.port).wait_open()
    text = "abcdefghijklmnopqrstuvwxyz"
    ws.send_frame(W.Opcode.TEXT, f"fragments:3:{text}")
    assert client.next_data_message() == ("TEXT", text.encode())
    begins = [e for e in client.events if e[0] == "begin"]
    size = len(text) // 3
    assert begins[0] == ("begin", "TEXT", size, False)
    assert begins[1][1:] == ("CONTINUATION", size, False)
    assert begins[-1][1] == "CONTINUATION" and begins[-1][3] is True


def test_continuation_without_message_fails_connection(server, client):
    client.connect(server.port).wait_open()
    d = client.send_and_wait(W.Opcode.CONTINUATION, b"orphan")
    assert d.exception.name == "AWS_ERROR_INVALID_STATE"
    assert client.wait_shutdown().exception.name == "AWS_ERROR_INVALID_STATE"


# ------------------------------------------------------------------ large payloads -------
def test_large_payloads_1mib(server, client):
    ws = client.connect(server.port).wait_open()
    data = os.urandom(1 << 20)
    assert client.send_and_wait(W.Opcode.BINARY, data).exception is None
    assert client.next_data_message(30) == ("BINARY", data)
    ws.send_frame(W.Opcode.TEXT, f"send:{1 << 20}")
    op, got = client.next_data_message(30)
    assert op == "BINARY" and len(got) == 1 << 20
    assert got[:512] == bytes(range(256)) * 2


# ------------------------------------------------------------------ ping / pong ----------
def test_client_ping_gets_pong(server, client):
    ws = client.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.PING, b"are you there")
    assert client.next_message() == ("PONG", b"are you there")


def test_server_ping_is_answered_automatically(server, client):
    ws = client.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, "ping:xyz")
    # the PING is reported to the user, and the server only says "pong:xyz" after our PONG
    assert client.next_message() == ("PING", b"xyz")
    assert client.next_data_message() == ("TEXT", b"pong:xyz")


# ------------------------------------------------------------------ closing --------------
def test_client_close(server, client):
    ws = client.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, "bye")
    assert client.next_data_message() == ("TEXT", b"bye")
    ws.close()
    ws.close()  # idempotent
    assert client.wait_shutdown().exception is None
    assert server.closed.wait(10)
    assert server.close_codes == [1005]  # a CLOSE frame without status, as the reference sends
    with pytest.raises(AwsCrtError) as e:
        ws.send_frame(W.Opcode.TEXT, "too late")
    assert e.value.name == "AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT"


@pytest.mark.parametrize("code", [1000, 1001, 4001])
def test_server_close_with_status(server, client, code):
    ws = client.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, f"close:{code}:done here")
    op, payload = client.next_message()
    assert op == "CLOSE"
    assert int.from_bytes(payload[:2], "big") == code and payload[2:] == b"done here"
    # the server closes the socket once our CLOSE reply arrived
    assert client.wait_shutdown().exception.name == "AWS_IO_SOCKET_CLOSED"
    assert server.closed.wait(10)
    assert server.close_codes == [code]


def test_user_close_frame_then_sends_fail(server, client):
    ws = client.connect(server.port).wait_open()
    assert client.send_and_wait(W.Opcode.CLOSE, (1000).to_bytes(2, "big") + b"ok").exception is None
    with pytest.raises(AwsCrtError) as e:
        ws.send_frame(W.Opcode.TEXT, "after close")
    assert e.value.name == "AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT"
    assert client.next_message() == ("CLOSE", (1000).to_bytes(2, "big") + b"ok")
    assert client.wait_shutdown().exception.name == "AWS_IO_SOCKET_CLOSED"
    assert server.closed.wait(10)
    assert server.close_codes == [1000]


def test_callback_exception_closes_websocket(server, leak_check, caplog):
    rec = Recorder(W)

    def bad_begin(d):
        raise RuntimeError("user bug")

    rec._on_begin = bad_begin  # type: ignore[method-assign]
    ws = rec.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, "boom")
    assert rec.wait_shutdown().exception is None
    assert "user bug" in caplog.text
    del ws
    rec.close_and_release()


def test_dropping_websocket_closes_it(server, leak_check):
    rec = Recorder(W)
    rec.connect(server.port).wait_open()
    rec.forget()
    gc.collect()
    assert rec.wait_shutdown().exception is None
    assert server.closed.wait(10)
    rec.close_and_release()


# ------------------------------------------------------------------ read window ----------
def test_manage_read_window(server, client):
    ws = client.connect(server.port, manage_read_window=True, initial_read_window=4).wait_open()
    ws.send_frame(W.Opcode.BINARY, b"0123456789")
    assert client.payload_event.wait(10)
    client.payload_event.clear()
    # the window is exhausted: nothing more arrives until it is opened again, and the
    # socket is no longer read
    assert not client.payload_event.wait(0.3)
    assert client.payload_bytes == 4
    assert ws._binding._reading is False
    ws.increment_read_window(3)
    while client.payload_bytes < 7:
        assert client.payload_event.wait(10)
        client.payload_event.clear()
    assert not client.payload_event.wait(0.2)
    assert client.payload_bytes == 7
    ws.increment_read_window(1000)
    assert client.next_data_message() == ("BINARY", b"0123456789")
    payloads = [e[1] for e in client.events if e[0] == "payload"]
    assert payloads[0] == b"0123"


def test_zero_initial_window_then_open(server, client):
    ws = client.connect(server.port, manage_read_window=True, initial_read_window=0).wait_open()
    ws.send_frame(W.Opcode.TEXT, "waiting")
    assert not client.payload_event.wait(0.3)
    ws.increment_read_window(1 << 20)
    assert client.next_data_message() == ("TEXT", b"waiting")


# ------------------------------------------------------------------ TLS ------------------
def test_tls_echo(pki, client):  # noqa: F811
    with WsServer(ssl_context=server_ssl_context(pki)) as srv:
        ws = client.connect(srv.port, host="localhost", tls_connection_options=tls_options(pki)).wait_open()
        data = os.urandom(200_000)
        ws.send_frame(W.Opcode.BINARY, data)
        assert client.next_data_message() == ("BINARY", data)
        ws.send_frame(W.Opcode.TEXT, "over tls")
        assert client.next_data_message() == ("TEXT", b"over tls")
        ws.close()
        assert client.wait_shutdown().exception is None


def test_tls_untrusted_server_fails(pki, client):  # noqa: F811
    opts = TlsContextOptions()
    opts.override_default_trust_store(pki.other_ca_cert.pem)
    conn = ClientTlsContext(opts).new_connection_options()
    conn.set_server_name("localhost")
    with WsServer(ssl_context=server_ssl_context(pki)) as srv:
        d = client.connect(srv.port, host="localhost", tls_connection_options=conn).wait_setup()
        assert d.exception is not None and d.websocket is None
        assert d.exception.name.startswith("AWS_IO_TLS")


# ------------------------------------------------------------------ proxy ----------------
@pytest.fixture
def tinyproxy(tmp_path):
    from helpers.http_servers import Tinyproxy

    binary = require_binary("tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
    proxy = Tinyproxy(binary, str(tmp_path), free_port())
    yield proxy
    proxy.stop()


def test_through_http_proxy(server, client, tinyproxy):
    ws = client.connect(server.port,
                        proxy_options=HttpProxyOptions("127.0.0.1", tinyproxy.port)).wait_open()
    ws.send_frame(W.Opcode.TEXT, "via proxy")
    assert client.next_data_message() == ("TEXT", b"via proxy")


def test_tls_through_http_proxy(pki, client, tinyproxy):  # noqa: F811
    with WsServer(ssl_context=server_ssl_context(pki)) as srv:
        ws = client.connect(srv.port, host="localhost", tls_connection_options=tls_options(pki),
                            proxy_options=HttpProxyOptions("127.0.0.1", tinyproxy.port)).wait_open()
        ws.send_frame(W.Opcode.BINARY, b"tunnelled")
        assert client.next_data_message() == ("BINARY", b"tunnelled")
        ws.close()
        assert client.wait_shutdown().exception is None


def test_proxy_refusing_connect(client):
    # a "proxy" that answers CONNECT with 403
    from helpers.ws_server import RawServer

    with RawServer(lambda h, k: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as rs:
        d = client.connect(9, proxy_options=HttpProxyOptions("127.0.0.1", rs.port)).wait_setup()
        assert d.exception.name == "AWS_ERROR_HTTP_PROXY_CONNECT_FAILED"


# ------------------------------------------------------------------ differential ---------
def _scripted_session(module, port):
    rec = Recorder(module).connect(port)
    ws = rec.wait_open()
    ws.send_frame(module.Opcode.TEXT, "hello")
    assert rec.next_data_message() == ("TEXT", b"hello")
    ws.send_frame(module.Opcode.PING, b"p1")
    assert rec.next_message() == ("PONG", b"p1")
    ws.send_frame(module.Opcode.TEXT, "ping:srv")
    assert rec.next_data_message() == ("TEXT", b"pong:srv")
    ws.send_frame(module.Opcode.TEXT, "fragments:4:0123456789abcdef")
    assert rec.next_data_message() == ("TEXT", b"0123456789abcdef")
    ws.send_frame(module.Opcode.BINARY, b"a", fin=False)
    ws.send_frame(module.Opcode.CONTINUATION, b"b", fin=True)
    assert rec.next_data_message() == ("BINARY", b"ab")
    ws.send_frame(module.Opcode.TEXT, f"send:{70_000}")
    op, data = rec.next_data_message()
    assert op == "BINARY" and len(data) == 70_000
    del ws
    if module is W:
        rec.close_and_release()
    else:
        rec.websocket.close()
        rec.wait_shutdown()
        rec.forget()
    # payload chunking may differ; compare frames with their payload joined
    frames, cur = [], None
    for ev in rec.events:
        if ev[0] == "begin":
            cur = [ev, b""]
        elif ev[0] == "payload":
            cur[1] += ev[1]
        elif ev[0] == "complete":
            frames.append((cur[0], cur[1], ev[1]))
        else:
            frames.append(ev)
    return frames


def test_same_events_as_reference_on_websockets_server(server, leak_check):
    ref = pytest.importorskip("awscrt.websocket")
    ours = _scripted_session(W, server.port)
    theirs = _scripted_session(ref, server.port)
    assert ours == theirs


def test_waiting_for_send_inside_frame_callback_does_not_deadlock(server, leak_check):
    results = []
    done = threading.Event()

    class Replier(Recorder):
        def _on_complete(self, d):
            super()._on_complete(d)
            if d.frame.opcode == W.Opcode.TEXT and len(results) == 0:
                sent = threading.Event()
                self.websocket.send_frame(W.Opcode.TEXT, "reply", on_complete=lambda c: sent.set())
                results.append(sent.wait(5))  # blocks this callback until the send completes
                done.set()

    rec = Replier(W)
    ws = rec.connect(server.port).wait_open()
    ws.send_frame(W.Opcode.TEXT, "first")
    assert done.wait(10)
    assert results == [True]
    assert rec.next_data_message() == ("TEXT", b"first")
    assert rec.next_data_message() == ("TEXT", b"reply")
    del ws
    rec.close_and_release()


def test_slow_callbacks_pause_reading(server, leak_check):
    """Without a managed window, payload waiting for slow callbacks stops the reading."""
    gate = threading.Event()
    first = threading.Event()

    class Slow(Recorder):
        def _on_payload(self, d):
            first.set()
            gate.wait(10)
            super()._on_payload(d)

    rec = Slow(W)
    ws = rec.connect(server.port).wait_open()
    conn = ws._binding
    size = 24 << 20
    ws.send_frame(W.Opcode.TEXT, f"send:{size}")
    assert first.wait(10)
    import time

    deadline = time.monotonic() + 10
    while conn._reading and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not conn._reading, "reading was not paused while callbacks lagged"
    gate.set()
    op, data = rec.next_data_message(30)
    assert op == "BINARY" and len(data) == size
    assert conn._undelivered == 0
    del ws, conn
    rec.close_and_release()


def test_proxy_basic_auth(server, client, tmp_path):
    from helpers.http_servers import Tinyproxy

    from crtpy.http import HttpProxyAuthenticationType

    binary = require_binary("tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
    proxy = Tinyproxy(binary, str(tmp_path), free_port(), basic_auth=("wsuser", "s3cret"))
    try:
        bad = Recorder(W).connect(server.port, proxy_options=HttpProxyOptions(
            "127.0.0.1", proxy.port, auth_type=HttpProxyAuthenticationType.Basic,
            auth_username="wsuser", auth_password="wrong")).wait_setup()
        assert bad.exception.name == "AWS_ERROR_HTTP_PROXY_CONNECT_FAILED"
        del bad
        ws = client.connect(server.port, proxy_options=HttpProxyOptions(
            "127.0.0.1", proxy.port, auth_type=HttpProxyAuthenticationType.Basic,
            auth_username="wsuser", auth_password="s3cret")).wait_open()
        ws.send_frame(W.Opcode.TEXT, "authorized")
        assert client.next_data_message() == ("TEXT", b"authorized")
        del ws
        client.close_and_release()
    finally:
        proxy.stop()
