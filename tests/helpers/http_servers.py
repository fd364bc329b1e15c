"""Local HTTP servers for the crtpy.http tests.

* ``Http1Server``: Python's threading ``http.server`` (keep-alive HTTP/1.1) with routes
  for sizes, echo (Content-Length and chunked bodies, 100-continue) and chunked replies.
* ``RawServer``: a socket server that answers each connection with scripted bytes
  (malformed responses, closing mid-body, informational responses).
* ``H2Server``: an asyncio + h2 server (TLS with ALPN h2, or cleartext prior knowledge)
  with routes for sizes, echo, RST_STREAM, GOAWAY and flow-control checks.
* ``Tinyproxy``: a tinyproxy process with its config in a temp dir.

All listen on 127.0.0.1 only, on free ports, and stop when the fixture ends.
"""
from __future__ import annotations

import asyncio
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings


# ---------------------------------------------------------------------------------------
# HTTP/1.1: http.server
# ---------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Http1Server._Srv

    def log_message(self, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(n))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
               chunked: bool = False) -> None:
        self.send_response(status)
        for k, v in headers or []:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 1000):
                piece = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def _route(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers.items()),
                                     self.client_address[1]))
        path = self.path
        if path.startswith("/size/"):
            n = int(path.split("/")[2])
            self._reply(200, b"a" * n)
        elif path.startswith("/chunked/"):
            n = int(path.split("/")[2])
            self._reply(200, bytes(range(256)) * (n // 256), chunked=True)
        elif path == "/echo":
            body = self._read_body()
            self.server.bodies.append(body)
            self._reply(200, body, [("X-Method", self.command)])
        elif path == "/reject-expect":
            self.send_response(417)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
        elif path == "/close":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True
        elif path == "/headers":
            body = "\n".join(f"{k.lower()}: {v}" for k, v in self.headers.items()).encode()
            self._reply(200, body, [("X-Multi", "1"), ("X-Multi", "2")])
        else:
            self._reply(404, b"not found")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _route


class Http1Server:
    class _Srv(http.server.ThreadingHTTPServer):
        daemon_threads = True
        requests: list[Any]
        bodies: list[bytes]

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that hangs up mid-response is a scenario under test, not a server
            # fault; socketserver would print a traceback into the test's captured stderr.
            pass

    def __init__(self) -> None:
        self.httpd = self._Srv(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []
        self.httpd.bodies = []
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="test-http1-server")
        self._thread.start()

    @property
    def requests(self) -> list[Any]:
        return self.httpd.requests

    @property
    def bodies(self) -> list[bytes]:
        return self.httpd.bodies

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------
# raw scripted server
# ---------------------------------------------------------------------------------------
class RawServer:
    """Each accepted connection reads one request head, then runs ``script(conn, head)``."""

    def __init__(self, script: Callable[[socket.socket, bytes], None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True, name="test-raw-server")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                self.received.append(head)
                self.script(conn, head)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(5)


# ---------------------------------------------------------------------------------------
# HTTP/2 server on h2
# ---------------------------------------------------------------------------------------
class _H2ServerProtocol(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        self.server = server
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytearray] = {}
        self.req_headers: dict[int, dict[str, str]] = {}
        self.pending: dict[int, tuple[bytes, int]] = {}  # stream -> (data left, offset)
        self.hold_window = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.append(self)
        self.conn.initiate_connection()
        settings = dict(self.server.settings)
        if settings:
            # Announce the settings, but enforce them only once the client acknowledges
            # them (h2 applies them on the SETTINGS ACK).  Until the client has seen them
            # it may send up to the RFC defaults (65,535 bytes of stream window); applying
            # them at once (h2's Settings(initial_values=...)) made this server reset the
            # connection whenever a request's DATA overtook its SETTINGS frame.
            self.conn.update_settings(settings)
        self.flush()

    def flush(self) -> None:
        if self.server.preface_gate is not None and not self.server.preface_gate.is_set():
            return  # the test holds everything this server sends (its SETTINGS first)
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except Exception as exc:  # noqa: BLE001
            self.server.errors.append(exc)
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.req_headers[ev.stream_id] = dict(ev.headers)
                self.bodies[ev.stream_id] = bytearray()
                self.server.requests.append(dict(ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                self.server.received_data += len(ev.data)
                self.server.data_event.set()
                path = self.req_headers.get(ev.stream_id, {}).get(":path", "")
                if path != "/hold" and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.handle(ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                self.pump()
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.server.client_settings.update({int(k): v.new_value for k, v in ev.changed_settings.items()})
                self.pump()
            elif isinstance(ev, h2.events.StreamReset):
                self.pending.pop(ev.stream_id, None)
        self.flush()

    def respond(self, sid: int, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.conn.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body))),
                                     *(headers or [])])
        self.pending[sid] = (body, 0)
        self.pump()

    def pump(self) -> None:
        for sid, (body, off) in list(self.pending.items()):
            while off < len(body):
                try:
                    window = self.conn.local_flow_control_window(sid)
                except Exception:  # noqa: BLE001
                    self.pending.pop(sid, None)
                    break
                size = min(window, len(body) - off, self.conn.max_outbound_frame_size)
                if size <= 0:
                    break
                self.conn.send_data(sid, body[off:off + size])
                off += size
            if sid not in self.pending:
                continue
            if off >= len(body):
                self.conn.end_stream(sid)
                del self.pending[sid]
            else:
                self.pending[sid] = (body, off)
        self.flush()

    def handle(self, sid: int) -> None:
        hdrs = self.req_headers.get(sid, {})
        path = hdrs.get(":path", "/")
        body = bytes(self.bodies.get(sid, b""))
        if path.startswith("/size/"):
            self.respond(sid, 200, b"b" * int(path.split("/")[2]))
        elif path == "/echo":
            self.respond(sid, 200, body, [("x-method", hdrs.get(":method", ""))])
        elif path == "/rst":
            self.conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/goaway":
            self.conn.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid - 2 if sid > 2 else 0)
        elif path == "/hold":
            self.respond(sid, 200, str(len(body)).encode())
        elif path == "/headers":
            self.respond(sid, 200, repr(sorted(hdrs.items())).encode())
        else:
            self.respond(sid, 404, b"")
        self.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


class H2Server:
    """asyncio + h2 server on its own thread; TLS (ALPN h2 / http/1.1) when certs given."""

    def __init__(self, certfile: str | None = None, keyfile: str | None = None,
                 settings: dict[int, int] | None = None, alpn: tuple[str, ...] = ("h2",),
                 hold_preface: bool = False) -> None:
        self.settings = settings or {}
        # hold_preface: send nothing (not even SETTINGS) until release_preface()
        self.preface_gate: threading.Event | None = threading.Event() if hold_preface else None
        self.errors: list[BaseException] = []  # protocol errors the server hit
        self.data_event = threading.Event()  # set whenever DATA arrives
        self.requests: list[dict[str, str]] = []
        self.connections: list[_H2ServerProtocol] = []
        self.client_settings: dict[int, int] = {}
        self.received_data = 0
        self.loop = asyncio.new_event_loop()
        ctx = None
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            ctx.set_alpn_protocols(list(alpn))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ctx,), daemon=True, name="test-h2-server")
        self._thread.start()
        self._ready.wait(5)

    def _run(self, ctx: ssl.SSLContext | None) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _H2ServerProtocol(self), "127.0.0.1", 0, ssl=ctx))
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.server.close()
        for c in self.connections:
            if c.transport is not None:
                c.transport.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def release_preface(self) -> None:
        """Let a ``hold_preface`` server send what it has held back (SETTINGS first)."""
        def go() -> None:
            assert self.preface_gate is not None
            self.preface_gate.set()
            for c in self.connections:
                c.flush()
        self.call(go)

    def wait_received(self, n: int, timeout: float) -> bool:
        """Wait until the server has received at least ``n`` bytes of DATA."""
        deadline = time.monotonic() + timeout
        while self.received_data < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.data_event.wait(left)
            self.data_event.clear()
        return True

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# ---------------------------------------------------------------------------------------
# tinyproxy
# ---------------------------------------------------------------------------------------
class Tinyproxy:
    def __init__(self, binary: str, directory: str, port: int,
                 basic_auth: tuple[str, str] | None = None) -> None:
        self.port = port
        conf = os.path.join(directory, "tinyproxy.conf")
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 50",
                 "Allow 127.0.0.1", "DisableViaHeader Yes",
                 f"PidFile \"{os.path.join(directory, 'tinyproxy.pid')}\"",
                 f"LogFile \"{os.path.join(directory, 'tinyproxy.log')}\"", "LogLevel Info"]
        if basic_auth:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(directory, "tinyproxy.log")
        self.proc = subprocess.Popen([binary, "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("tinyproxy exited at start")
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("tinyproxy did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ---------------------------------------------------------------------------------------
# fixtures (import them into a test module by name)
# ---------------------------------------------------------------------------------------
import pytest


@pytest.fixture
def h1_server():
    srv = Http1Server()
    yield srv
    srv.stop()


@pytest.fixture
def h2_server():
    """Cleartext HTTP/2 (prior knowledge)."""
    srv = H2Server()
    yield srv
    srv.stop()


@pytest.fixture
def h2_tls_server(pki):
    srv = H2Server(certfile=pki.server_cert, keyfile=pki.server_key, alpn=("h2",))
    yield srv
    srv.stop()


def tls_options(pki: Any, alpn: list[str] | None = None, server_name: str = "localhost") -> Any:
    from crtpy.io import ClientTlsContext, TlsContextOptions

    opts = TlsContextOptions()
    opts.override_default_trust_store_from_path(None, pki.ca_cert)
    if alpn:
        opts.alpn_list = alpn
    conn_opts = ClientTlsContext(opts).new_connection_options()
    conn_opts.set_server_name(server_name)
    return conn_opts


@pytest.fixture
def leak_check():
    """conftest's leak_check, after first letting the loop and callback threads drop
    their last transient references (crtpy._test.check_for_leaks keeps the objects it saw
    alive in its first pass alive until it gives up, so it is only called once nothing
    is left)."""
    import gc

    from crtpy._test import _release_static_defaults, check_for_leaks, living_resources

    yield
    _release_static_defaults()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        gc.collect()
        if not living_resources():
            break
        time.sleep(0.02)
    check_for_leaks(timeout_sec=10.0)
