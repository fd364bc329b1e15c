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
from typing import Callable, Optional

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

    def __init__(self, ssl_context: Optional[ssl.SSLContext] = None,
                 subprotocols: Optional[list[str]] = None) -> None:
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.port = 0
        self.requests: list[list[tuple[str, str]]] = []
        self.close_codes: list[Optional[int]] = []
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

    def start(self) -> "WsServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "WsServer":
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


def upgrade_response(key: str, *, accept: Optional[str] = None, status: str = "101 Switching Protocols",
                     extra: str = "") -> bytes:
    acc = accept_key(key) if accept is None else accept
    return (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {acc}\r\n{extra}\r\n").encode()


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: Optional[bytes] = None, length: Optional[int] = None) -> bytes:
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

    def client_close_code(self) -> Optional[int]:
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

    def start(self) -> "RawServer":
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

    def __enter__(self) -> "RawServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
