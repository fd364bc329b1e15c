"""WebSocket test servers on 127.0.0.1.

* :class:`WsServer` - a well-behaved server built on the ``websockets`` library (plain or
  TLS), running its own asyncio loop on a thread.  Its handler echoes every message, and
  obeys a few text commands so tests can drive server-side behaviour:

  ``"close:<code>:<reason>"``  the server starts the close handshake with that status;
  ``"ping:<text>"``            the server sends a PING and, once the PONG arrives, sends
                               the text ``"pong:<text>"``;
  ``"fragments:<n>:<text>"``   the server sends ``<text>`` as a message of ``n`` fragments;
  ``"send:<n>"``               the server sends ``n`` bytes of binary payload.

  The handshake requests it saw are kept in ``requests`` (header lists), the close codes
  the clients sent in ``close_codes``.

* :class:`RawServer` - a misbehaving server of our own: it reads one HTTP request and
  answers with whatever ``respond(request_headers, accept_key)`` returns (bytes), then
  records everything the client sends afterwards until the client closes.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable

import websockets
from websockets.asyncio.server import ServerConnection, serve

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def server_ssl_context(pki) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    return ctx


class WsServer:
    """A ``websockets`` server on a thread.  Use as a context manager."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None,
                 subprotocols: list[str] | None = None) -> None:
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.port = 0
        self.requests: list[list[tuple[str, str]]] = []
        self.close_codes: list[int | None] = []
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ws-test-server",
                                        daemon=True)
        self._server = None

    async def _handler(self, conn: ServerConnection) -> None:
        self.requests.append(list(conn.request.headers.raw_items()))
        try:
            async for msg in conn:
                if isinstance(msg, str) and msg.startswith("close:"):
                    _, code, reason = msg.split(":", 2)
                    await conn.close(int(code), reason)
                    break
                if isinstance(msg, str) and msg.startswith("ping:"):
                    waiter = await conn.ping(msg[5:].encode())
                    await waiter
                    await conn.send("pong:" + msg[5:])
                    continue
                if isinstance(msg, str) and msg.startswith("fragments:"):
                    _, n, text = msg.split(":", 2)
                    size = max(1, len(text) // int(n))
                    parts = [text[i:i + size] for i in range(0, len(text), size)]
                    await conn.send(iter(parts))
                    continue
                if isinstance(msg, str) and msg.startswith("send:"):
                    await conn.send(bytes(range(256)) * (int(msg[5:]) // 256)
                                    + bytes(int(msg[5:]) % 256))
                    continue
                await conn.send(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_codes.append(conn.close_code)
            self.closed.set()

    async def _start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=self.ssl_context,
                                   subprotocols=self.subprotocols, compression=None,
                                   max_size=None, ping_interval=None, close_timeout=2)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def start(self) -> WsServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> WsServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _recv_request(conn: socket.socket) -> tuple[str, list[tuple[str, str]]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client closed before sending a request")
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def upgrade_response(key: str, *, accept: str | None = None, status: str = "101 Switching Protocols",
                     extra: str = "") -> bytes:
    acc = accept_key(key) if accept is None else accept
    return (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {acc}\r\n{extra}\r\n").encode()


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bytes | None = None, length: int | None = None) -> bytes:
    """Encode one frame the way a (possibly misbehaving) server would."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mbit | 127)
        head += n.to_bytes(8, "big")
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


class RawServer:
    """Serves scripted bytes to each client.  ``respond(headers, key)`` returns what to send
    after the request (the handshake response plus any frames)."""

    def __init__(self, respond: Callable[[list[tuple[str, str]], str], bytes],
                 close_after: bool = False) -> None:
        self.respond = respond
        self.close_after = close_after
        self.received = bytearray()
        self.client_closed = threading.Event()
        self.request_line = ""
        self.headers: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="ws-raw-server", daemon=True)
        self._stopping = False

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.request_line, self.headers = _recv_request(conn)
                    key = next((v for k, v in self.headers if k.lower() == "sec-websocket-key"), "")
                    conn.sendall(self.respond(self.headers, key))
                    if self.close_after:
                        conn.shutdown(socket.SHUT_WR)
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        self.received += chunk
                except OSError:
                    pass
                finally:
                    self.client_closed.set()

    def client_close_code(self) -> int | None:
        """Status code of the first CLOSE frame the client sent (unmasking it), if any."""
        data = bytes(self.received)
        i = 0
        while i + 2 <= len(data):
            op = data[i] & 0x0F
            n = data[i + 1] & 0x7F
            j = i + 2
            if n == 126:
                n = int.from_bytes(data[j:j + 2], "big")
                j += 2
            elif n == 127:
                n = int.from_bytes(data[j:j + 8], "big")
                j += 8
            mask = data[j:j + 4]
            j += 4
            payload = bytes(b ^ mask[k % 4] for k, b in enumerate(data[j:j + n]))
            if op == 8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            i = j + n
        return None

    def start(self) -> RawServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        self._thread.join(10)

    def __enter__(self) -> RawServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Recorder:
    """Connects a client of ``module`` (``crtpy.websocket`` or ``awscrt.websocket``) and
    records every callback as a plain tuple, so two implementations can be compared.

    ``events`` holds ``("setup", error_name, status)``, ``("begin", opcode_name, length,
    fin)``, ``("payload", bytes)``, ``("complete", error_name)``, ``("shutdown",
    error_name)``; ``messages`` receives whole messages as ``(opcode_name, bytes)``
    (control frames included)."""

    def __init__(self, module) -> None:  # type: ignore[no-untyped-def]
        import queue

        self.W = module
        self.events: list[tuple] = []
        self.setup_done = threading.Event()
        self.shutdown_done = threading.Event()
        self.setup_data = None
        self.shutdown_data = None
        self.websocket = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.callback_threads: set[str] = set()
        self._msg_op: str | None = None
        self._msg = bytearray()
        self._ctrl = bytearray()
        self.payload_bytes = 0
        self.payload_event = threading.Event()

    @staticmethod
    def _name(exc) -> str | None:  # type: ignore[no-untyped-def]
        return None if exc is None else getattr(exc, "name", type(exc).__name__)

    def _on_setup(self, d) -> None:  # type: ignore[no-untyped-def]
        self.callback_threads.add(threading.current_thread().name)
        self.setup_data = d
        self.websocket = d.websocket
        self.events.append(("setup", self._name(d.exception), d.handshake_response_status))
        self.setup_done.set()

    def _on_shutdown(self, d) -> None:  # type: ignore[no-untyped-def]
        self.callback_threads.add(threading.current_thread().name)
        self.shutdown_data = d
        self.events.append(("shutdown", self._name(d.exception)))
        self.shutdown_done.set()

    def _on_begin(self, d) -> None:  # type: ignore[no-untyped-def]
        self.callback_threads.add(threading.current_thread().name)
        f = d.frame
        self.events.append(("begin", f.opcode.name, f.payload_length, f.fin))
        if f.opcode.is_data_frame():
            if f.opcode.name != "CONTINUATION":
                self._msg_op = f.opcode.name
                self._msg = bytearray()
        else:
            self._ctrl = bytearray()

    def _on_payload(self, d) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("payload", bytes(d.data)))
        if d.frame.opcode.is_data_frame():
            self._msg += d.data
            self.payload_bytes += len(d.data)
            self.payload_event.set()
        else:
            self._ctrl += d.data

    def _on_complete(self, d) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("complete", self._name(d.exception)))
        if d.exception is not None:
            return
        f = d.frame
        if not f.opcode.is_data_frame():
            self.messages.put((f.opcode.name, bytes(self._ctrl)))
        elif f.fin:
            self.messages.put((self._msg_op or "?", bytes(self._msg)))

    def connect(self, port: int, *, host: str = "127.0.0.1", path: str = "/", request=None,  # type: ignore[no-untyped-def]
                **kwargs) -> Recorder:
        if request is None:
            request = self.W.create_handshake_request(host=host, path=path)
        self.W.connect(host=host, port=port, handshake_request=request,
                       on_connection_setup=self._on_setup,
                       on_connection_shutdown=self._on_shutdown,
                       on_incoming_frame_begin=self._on_begin,
                       on_incoming_frame_payload=self._on_payload,
                       on_incoming_frame_complete=self._on_complete, **kwargs)
        return self

    def wait_setup(self, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        assert self.setup_done.wait(timeout), "on_connection_setup was not called"
        return self.setup_data

    def wait_open(self, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        d = self.wait_setup(timeout)
        assert d.exception is None, f"connection failed: {d.exception!r}"
        return d.websocket

    def wait_shutdown(self, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        assert self.shutdown_done.wait(timeout), "on_connection_shutdown was not called"
        return self.shutdown_data

    def next_message(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def next_data_message(self, timeout: float = 10.0) -> tuple[str, bytes]:
        """The next TEXT/BINARY message, skipping control frames (PONGs and the like)."""
        while True:
            op, data = self.next_message(timeout)
            if op in ("TEXT", "BINARY"):
                return op, data

    def close_and_release(self, timeout: float = 10.0) -> None:
        """Close the WebSocket (if any), wait for the shutdown callback, drop every
        reference and wait until crtpy's connection objects are gone (for leak checks)."""
        ws = self.websocket
        if ws is not None:
            ws.close()
            self.wait_shutdown(timeout)
        self.forget()
        del ws
        wait_connections_released(timeout)

    def forget(self) -> None:
        """Drop references to callback data (so leak checks see the WebSocket go)."""
        self.websocket = None
        self.setup_data = None
        self.shutdown_data = None

    def send_and_wait(self, opcode, payload=None, fin=True, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        """send_frame and wait for on_complete; returns the OnSendFrameCompleteData."""
        done = threading.Event()
        box = []

        def on_complete(d):  # type: ignore[no-untyped-def]
            box.append(d)
            done.set()

        self.websocket.send_frame(opcode, payload, fin=fin, on_complete=on_complete)
        assert done.wait(timeout), "send_frame on_complete was not called"
        return box[0]


def client_tls_options(pki, server_name: str = "localhost"):  # type: ignore[no-untyped-def]
    """crtpy TlsConnectionOptions trusting the test CA."""
    from crtpy.io import ClientTlsContext, TlsContextOptions

    opts = TlsContextOptions()
    opts.override_default_trust_store(pki.ca_cert.pem)
    conn = ClientTlsContext(opts).new_connection_options()
    conn.set_server_name(server_name)
    return conn


def wait_connections_released(timeout: float = 10.0) -> None:
    """Wait until no crtpy WebSocket connection object is alive (they go away shortly
    after their last callback, once the loop thread has finished with them)."""
    import gc
    import time

    import crtpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        alive = [o for o in list(crtpy.NativeResource._living)
                 if type(o).__module__ == "crtpy._websocket.driver"]
        if not alive:
            return
        del alive
        time.sleep(0.01)
