"""A small event-stream RPC server for tests, on loopback, independent of crtpy.

It decodes with botocore's event-stream parser and encodes with its own few lines of
``struct`` code, so a bug in crtpy's codec cannot hide itself.  It runs its own asyncio
loop on a plain thread.

Protocol behaviour (stream id 0 = connection-level messages):

- CONNECT: answered with CONNECT_ACK + CONNECTION_ACCEPTED, or without the flag
  (rejected, then the server closes) when the payload is ``b"reject"`` or
  ``server.reject`` is set.
- PING: answered with PING_RESPONSE echoing headers and payload.
- a stream's first message carries an ``operation`` header; operations:

  ``echo``          echo every message back (flags too, so TERMINATE_STREAM ends it)
  ``count``         reply with N (= int(payload)) APPLICATION_MESSAGEs, the last one
                    with TERMINATE_STREAM
  ``error``         reply APPLICATION_ERROR + TERMINATE_STREAM
  ``hangup``        reply once, then close the TCP connection
  ``garbage``       reply with a frame whose message CRC is wrong
  ``bad_prelude``   reply with a frame whose prelude CRC is wrong
  ``ping_me``       send a PING (stream 0) to the client, then echo like ``echo``
  ``late``          reply with TERMINATE_STREAM, then once more on the same (now
                    closed) stream, then a PING
  ``unknown_stream``  send a message on a stream id the client never opened
  ``silent``        never answer
"""
from __future__ import annotations

import asyncio
import ssl
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from botocore.eventstream import EventStreamBuffer
from typing_extensions import Self

# message types / flags of the RPC protocol
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK, \
    PROTOCOL_ERROR, INTERNAL_ERROR = range(8)
CONNECTION_ACCEPTED = 1
TERMINATE_STREAM = 2


# -- an encoder of our own (header values given as (type, value)) --------------------------
def _header(name: str, htype: int, value: Any) -> bytes:
    nb = name.encode()
    out = bytes([len(nb)]) + nb + bytes([htype])
    if htype in (0, 1):
        return out
    if htype == 2:
        return out + struct.pack(">b", value)
    if htype == 3:
        return out + struct.pack(">h", value)
    if htype == 4:
        return out + struct.pack(">i", value)
    if htype in (5, 8):
        return out + struct.pack(">q", value)
    if htype in (6, 7):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return out + struct.pack(">H", len(data)) + data
    if htype == 9:
        assert len(value) == 16
        return out + bytes(value)
    raise ValueError(htype)


def frame(headers: list[tuple[str, int, Any]], payload: bytes = b"", *,
          corrupt_prelude: bool = False, corrupt_message: bool = False) -> bytes:
    block = b"".join(_header(n, t, v) for n, t, v in headers)
    total = 16 + len(block) + len(payload)
    lengths = struct.pack(">II", total, len(block))
    pcrc = zlib.crc32(lengths) ^ (1 if corrupt_prelude else 0)
    body = lengths + struct.pack(">I", pcrc) + block + payload
    mcrc = zlib.crc32(body) ^ (1 if corrupt_message else 0)
    return body + struct.pack(">I", mcrc)


def rpc_frame(message_type: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"",
              extra: list[tuple[str, int, Any]] | None = None, **kw: Any) -> bytes:
    headers = list(extra or [])
    headers += [(":message-type", 4, message_type), (":message-flags", 4, flags),
                (":stream-id", 4, stream_id)]
    return frame(headers, payload, **kw)


@dataclass
class Received:
    headers: dict
    payload: bytes

    @property
    def message_type(self) -> int:
        return self.headers.get(":message-type", -1)

    @property
    def flags(self) -> int:
        return self.headers.get(":message-flags", 0)

    @property
    def stream_id(self) -> int:
        return self.headers.get(":stream-id", -1)


@dataclass
class ServerConnection:
    received: list[Received] = field(default_factory=list)
    operations: dict = field(default_factory=dict)   # stream id -> operation
    closed: threading.Event = field(default_factory=threading.Event)
    got_message: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate, timeout: float = 10.0) -> Received:
        with self.got_message:
            ok = self.got_message.wait_for(
                lambda: next((m for m in self.received if predicate(m)), None), timeout)
            if not ok:
                raise TimeoutError("the server did not receive the expected message")
            return ok


class _Protocol(asyncio.Protocol):
    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.state = ServerConnection()
        self.buffer = EventStreamBuffer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._add(self.state, self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.state.closed.set()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer.add_data(data)
        try:
            messages = list(self.buffer)
        except Exception:  # noqa: BLE001 - the client sent something botocore cannot parse
            self.server.parse_errors += 1
            assert self.transport is not None
            self.transport.close()
            return
        for m in messages:
            rec = Received(dict(m.headers), m.payload)
            with self.state.got_message:
                self.state.received.append(rec)
                self.state.got_message.notify_all()
            self.handle(rec)

    def handle(self, m: Received) -> None:
        sid, mtype, flags = m.stream_id, m.message_type, m.flags
        if sid == 0:
            if mtype == CONNECT:
                if self.server.silent_connect:
                    return
                accepted = not (self.server.reject or m.payload == b"reject")
                self.send(rpc_frame(CONNECT_ACK, CONNECTION_ACCEPTED if accepted else 0,
                                    extra=[("greeting", 7, "hello")], payload=b"ack"))
                if not accepted and self.server.close_on_reject:
                    assert self.transport is not None
                    self.transport.close()
            elif mtype == PING:
                extra = [(k, 7, v) for k, v in m.headers.items()
                         if not k.startswith(":") and isinstance(v, str)]
                self.send(rpc_frame(PING_RESPONSE, extra=extra, payload=m.payload))
            return
        op = self.state.operations.get(sid)
        if op is None:
            op = m.headers.get("operation", "")
            self.state.operations[sid] = op
            first = True
        else:
            first = False
        if op in ("echo", "ping_me"):
            if op == "ping_me" and first:
                self.send(rpc_frame(PING, payload=b"are you there"))
            self.send(rpc_frame(mtype, flags & TERMINATE_STREAM, sid, m.payload,
                                extra=[("echo", 0, True)]))
        elif op == "count" and first:
            n = int(m.payload or b"0")
            for i in range(n):
                last = i == n - 1
                self.send(rpc_frame(APPLICATION_MESSAGE, TERMINATE_STREAM if last else 0, sid,
                                    str(i).encode()))
        elif op == "error" and first:
            self.send(rpc_frame(APPLICATION_ERROR, TERMINATE_STREAM, sid, b"{\"message\": \"no\"}"))
        elif op == "hangup" and first:
            self.send(rpc_frame(APPLICATION_MESSAGE, 0, sid, b"bye"))
            assert self.transport is not None
            self.transport.close()
        elif op == "garbage" and first:
            self.send(rpc_frame(APPLICATION_MESSAGE, 0, sid, b"x", corrupt_message=True))
        elif op == "bad_prelude" and first:
            self.send(rpc_frame(APPLICATION_MESSAGE, 0, sid, b"x", corrupt_prelude=True))
        elif op == "late" and first:
            self.send(rpc_frame(APPLICATION_MESSAGE, TERMINATE_STREAM, sid, b"last"))
            self.send(rpc_frame(APPLICATION_MESSAGE, 0, sid, b"after the end"))
            self.send(rpc_frame(PING, payload=b"still here"))
        elif op == "unknown_stream" and first:
            self.send(rpc_frame(APPLICATION_MESSAGE, 0, sid + 1000, b"stray"))


class RpcServer:
    """``with RpcServer() as server: ... server.port``; ``ssl_context`` for TLS."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.reject = False
        self.silent_connect = False
        self.close_on_reject = True
        self.parse_errors = 0
        self.connections: list[ServerConnection] = []
        self._protocols: list[_Protocol] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="es-test-server",
                                        daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    def _add(self, state: ServerConnection, proto: _Protocol) -> None:
        with self._cond:
            self.connections.append(state)
            self._protocols.append(proto)
            self._cond.notify_all()

    def connection(self, index: int = 0, timeout: float = 10.0) -> ServerConnection:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) > index, timeout):
                raise TimeoutError("no connection reached the server")
            return self.connections[index]

    def send_raw(self, data: bytes, index: int = 0) -> None:
        """Write bytes to connection ``index`` from the server side."""
        self.connection(index)
        proto = self._protocols[index]
        self._loop.call_soon_threadsafe(proto.send, data)

    def drop(self, index: int = 0) -> None:
        """Close connection ``index`` from the server side."""
        self.connection(index)
        proto = self._protocols[index]
        assert proto.transport is not None
        self._loop.call_soon_threadsafe(proto.transport.close)

    def start(self) -> RpcServer:
        self._thread.start()

        async def serve() -> asyncio.AbstractServer:
            return await self._loop.create_server(lambda: _Protocol(self), self.host, 0,
                                                  ssl=self.ssl_context)

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._loop.is_closed():
            return  # already stopped
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for p in self._protocols:
                if p.transport is not None:
                    p.transport.close()
            await asyncio.sleep(0)

        if self._server is not None:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
