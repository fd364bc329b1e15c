"""The WebSocket-to-TCP relay used by the MQTT-over-WebSocket tests, driven by
crtpy.websocket (plain and TLS), in front of a TCP echo server and of Mosquitto."""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest
from conftest import free_port, require_binary
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.ws_mqtt_relay import start_relay
from helpers.ws_server import Recorder, server_ssl_context
from helpers.ws_server import client_tls_options as tls_options

import crtpy.websocket as W


class EchoServer:
    """A TCP echo server on 127.0.0.1 (one thread per connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def echo():
    srv = EchoServer()
    yield srv
    srv.stop()


def mqtt_request(host):
    req = W.create_handshake_request(host=host, path="/mqtt")
    req.headers.add("Sec-WebSocket-Protocol", "mqtt")
    return req


def read_bytes(rec, n, timeout=10.0):
    data = b""
    while len(data) < n:
        op, chunk = rec.next_data_message(timeout)
        assert op == "BINARY"
        data += chunk
    return data


def test_relay_plain(echo, leak_check):
    with start_relay("127.0.0.1", echo.port) as relay:
        rec = Recorder(W).connect(relay.port, request=mqtt_request("127.0.0.1"))
        ws = rec.wait_open()
        headers = {k.lower(): v for k, v in rec.setup_data.handshake_response_headers}
        assert headers["sec-websocket-protocol"] == "mqtt"
        payload = os.urandom(200_000)
        ws.send_frame(W.Opcode.BINARY, payload)
        assert read_bytes(rec, len(payload)) == payload
        assert relay.subprotocols == ["mqtt"] and relay.paths == ["/mqtt"]
        del ws
        rec.close_and_release()


def test_relay_refuses_other_subprotocols(echo, leak_check):
    with start_relay("127.0.0.1", echo.port) as relay:
        req = W.create_handshake_request(host="127.0.0.1")
        req.headers.add("Sec-WebSocket-Protocol", "chat")
        d = Recorder(W).connect(relay.port, request=req).wait_setup()
        assert d.exception.name == "AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE"
        assert d.handshake_response_status == 400
        assert relay.connections == 0


def test_relay_tls_and_drop(echo, pki, leak_check):  # noqa: F811
    with start_relay("127.0.0.1", echo.port, ssl_context=server_ssl_context(pki)) as relay:
        rec = Recorder(W).connect(relay.port, host="localhost", request=mqtt_request("localhost"),
                                  tls_connection_options=tls_options(pki))
        ws = rec.wait_open()
        ws.send_frame(W.Opcode.BINARY, b"over wss")
        assert read_bytes(rec, 8) == b"over wss"
        relay.drop_all()
        assert rec.wait_shutdown().exception is not None
        del ws
        rec.close_and_release()


def test_relay_to_mosquitto_connect_connack(tmp_path, leak_check):
    binary = require_binary("mosquitto", "/usr/sbin/mosquitto")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        with start_relay("127.0.0.1", port) as relay:
            rec = Recorder(W).connect(relay.port, request=mqtt_request("127.0.0.1"))
            ws = rec.wait_open()
            client_id = b"crtpy-ws"
            variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
            ws.send_frame(W.Opcode.BINARY, bytes([0x10, len(variable)]) + variable)
            assert read_bytes(rec, 4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
            ws.send_frame(W.Opcode.BINARY, b"\xe0\x00")  # DISCONNECT
            assert rec.wait_shutdown().exception.name == "AWS_IO_SOCKET_CLOSED"
            del ws
            rec.close_and_release()
    finally:
        proc.terminate()
        proc.wait(10)
