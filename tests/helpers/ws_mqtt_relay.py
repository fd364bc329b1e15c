"""A WebSocket-to-TCP relay for MQTT-over-WebSocket tests.

Debian's Mosquitto cannot open a WebSocket listener, so tests put this relay in front of
its TCP listener::

    relay = start_relay("127.0.0.1", broker_port)            # ws://127.0.0.1:<relay.port>/
    relay = start_relay("127.0.0.1", broker_port, ssl_context=ctx)   # wss://
    ...
    relay.stop()

Every WebSocket connection gets its own TCP connection to the target; binary (and text)
messages are written to it as they are, and bytes read from it go back as binary
messages.  When either side closes, the other is closed too.  The ``mqtt`` subprotocol is
selected when the client offers it (as MQTT clients must); clients offering only other
subprotocols are refused with HTTP 400, clients offering none are accepted.  The relay
listens on 127.0.0.1 only.  ``relay.connections`` counts accepted WebSocket connections;
``relay.subprotocols`` records the subprotocol chosen for each; ``relay.paths`` the
request paths; ``relay.drop_all()`` cuts every open connection (to simulate a network
failure).
"""
from __future__ import annotations

import asyncio
import ssl
import threading

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = ["Relay", "start_relay"]


class Relay:
    """Handle of a running relay."""

    def __init__(self, target_host: str, target_port: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.ssl_context = ssl_context
        self.port = 0
        self.connections = 0
        self.subprotocols: list[str | None] = []
        self.paths: list[str] = []
        self._open: set[ServerConnection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ws-mqtt-relay",
                                        daemon=True)
        self._server = None

    # -- handshake ---------------------------------------------------------------------
    @staticmethod
    def _select(conn: ServerConnection, offered: list[str]) -> str | None:
        return "mqtt" if "mqtt" in offered else None

    def _check_request(self, conn: ServerConnection, request) -> Response | None:  # type: ignore[no-untyped-def]
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol")
                   for p in v.split(",") if p.strip()]
        if offered and "mqtt" not in offered:
            return Response(400, "Bad Request", Headers([("Content-Length", "0")]), b"")
        return None

    # -- relaying ----------------------------------------------------------------------
    async def _handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        self.subprotocols.append(conn.subprotocol)
        self.paths.append(conn.request.path if conn.request else "")
        self._open.add(conn)
        try:
            reader, writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._open.discard(conn)
            await conn.close(1011, "target unreachable")
            return

        async def ws_to_tcp() -> None:
            try:
                async for msg in conn:
                    writer.write(msg.encode() if isinstance(msg, str) else msg)
                    await writer.drain()
            except (websockets.ConnectionClosed, ConnectionError):
                pass
            finally:
                writer.close()

        async def tcp_to_ws() -> None:
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    await conn.send(data)
            except (websockets.ConnectionClosed, ConnectionError):
                pass
            finally:
                await conn.close()

        try:
            await asyncio.gather(ws_to_tcp(), tcp_to_ws())
        finally:
            self._open.discard(conn)
            writer.close()

    # -- lifecycle ---------------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=self.ssl_context,
                                   subprotocols=["mqtt"], select_subprotocol=self._select,
                                   process_request=self._check_request, compression=None,
                                   max_size=None, ping_interval=None, close_timeout=1)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _drop_all(self) -> None:
        for conn in list(self._open):
            conn.transport.abort()

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._drop_all()
        await self._server.wait_closed()

    def start(self) -> Relay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def drop_all(self) -> None:
        """Abort every open WebSocket connection (the listener stays up)."""
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(10)

    def stop(self) -> None:
        if self._server is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            finally:
                self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Relay:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_relay(target_host: str, target_port: int, *,
                ssl_context: ssl.SSLContext | None = None) -> Relay:
    """Start a relay on a free port of 127.0.0.1 in front of ``target_host:target_port``
    (TLS when ``ssl_context``, a server context, is given).  Returns the :class:`Relay`;
    call ``.stop()`` (or use it as a context manager) when done."""
    return Relay(target_host, target_port, ssl_context).start()
