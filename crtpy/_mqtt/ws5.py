"""MQTT over WebSocket for the MQTT 5 client.

:class:`WsAdapter` is the asyncio protocol of the TCP/TLS connection.  It performs the
WebSocket opening handshake (GET /mqtt, subprotocol ``mqtt``, after the user's optional
handshake transform), then carries MQTT bytes in binary frames: it hands the payload of
incoming frames to the MQTT protocol (``inner``) and gives that protocol a transport
whose ``write`` sends binary frames.  The WebSocket work is done by ``crtpy._websocket``'s
sans-I/O core.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from .._errors import error
from .._runtime.futures import CrtFuture
from .._websocket import handshake as hs
from .._websocket.core import ClientProtocol, CloseReceived, FramePayload, ProtocolFailure
from .._websocket.frames import encode_frame

_BINARY = 0x2


class _FramedTransport:
    """What the MQTT protocol writes to: each write becomes one binary frame."""

    def __init__(self, adapter: WsAdapter) -> None:
        self._adapter = adapter

    def write(self, data: bytes) -> None:
        t = self._adapter.transport
        if t is not None and not t.is_closing():
            t.writelines(encode_frame(_BINARY, data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        t = self._adapter.transport
        return t.get_extra_info(name, default) if t is not None else default

    def is_closing(self) -> bool:
        t = self._adapter.transport
        return t is None or t.is_closing()

    def close(self) -> None:
        self._adapter.close()


class WsAdapter(asyncio.Protocol):
    def __init__(self, inner: asyncio.Protocol, host: str, port: int, default_port: int,
                 transform: Any, client: Any, post: Any) -> None:
        self.inner = inner
        self.host = host
        self.port = port
        self.default_port = default_port
        self.transform = transform
        self.client = client  # a callable giving the Client (held weakly)
        self.post = post  # runs a user callback on a worker thread
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.handshake_done: asyncio.Future[None] = loop.create_future()
        self.parser = hs.ResponseParser()
        self.key = hs.new_key()
        self.protocols: list[str] = ["mqtt"]
        self.ws: ClientProtocol | None = None
        self.framed = _FramedTransport(self)

    # -- handshake --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection
        asyncio.get_running_loop().create_task(self._send_handshake())

    def _request(self) -> Any:
        from ..http import HttpHeaders, HttpRequest

        authority = self.host if self.port == self.default_port else f"{self.host}:{self.port}"
        headers = HttpHeaders([
            ("Host", authority), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "mqtt")])
        return HttpRequest("GET", "/mqtt", headers)

    async def _send_handshake(self) -> None:
        try:
            request = self._request()
            if self.transform is not None:
                from ..mqtt5 import WebsocketHandshakeTransformArgs

                done = CrtFuture()
                self.post(self.transform, WebsocketHandshakeTransformArgs(self.client(), request, done))
                await asyncio.wrap_future(done)
            headers = list(request.headers)
            key = hs.header_value(headers, "Sec-WebSocket-Key")
            if key is not None:
                self.key = key
            offered = hs.header_value(headers, "Sec-WebSocket-Protocol")
            self.protocols = [p.strip() for p in offered.split(",") if p.strip()] if offered else []
            data = hs.encode_request(request.method, request.path, headers)
        except hs.HandshakeError as e:
            self._fail(error(e.name, e.detail))
            return
        except BaseException as e:  # noqa: BLE001 - the transform's exception ends the attempt
            self._fail(e)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, exc: BaseException) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
        self.close()

    def data_received(self, data: bytes) -> None:
        if self.ws is None:
            try:
                self.parser.feed(data)
                if not self.parser.done:
                    return
                hs.check_upgrade(self.parser.status or 0, self.parser.headers, self.key, self.protocols)
            except hs.HandshakeError as e:
                self._fail(error(e.name, e.detail))
                return
            self.ws = ClientProtocol()
            self.inner.connection_made(self.framed)  # type: ignore[arg-type]
            if not self.handshake_done.done():
                self.handshake_done.set_result(None)
            data = self.parser.leftover
            if not data:
                return
        ws = self.ws
        ws.receive_data(data)
        for ev in ws.events():
            if isinstance(ev, FramePayload):
                self.inner.data_received(ev.data)
            elif isinstance(ev, (CloseReceived, ProtocolFailure)):
                self._flush()
                self.close()
                return
        self._flush()

    def _flush(self) -> None:
        if self.ws is not None and self.transport is not None and not self.transport.is_closing():
            out = self.ws.data_to_send()
            if out:
                self.transport.writelines(out)

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            if self.ws is not None and not self.ws.close_sent:
                with contextlib.suppress(Exception):  # closing anyway
                    t.writelines(self.ws.close_frame())
            t.close()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(
                exc if exc is not None else error("AWS_IO_SOCKET_CLOSED", "closed during the WebSocket handshake"))
        self.inner.connection_lost(exc)
