"""The asyncio side of an MQTT connection that both drivers (MQTT 5 and 3.1.1) share:
the transport, TCP_QUICKACK, the ``closed`` future.  Each driver's subclass feeds the
received bytes to its own protocol core."""
from __future__ import annotations

import asyncio
import socket
from typing import cast

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class MqttStreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.quickack: socket.socket | None = None
        self.closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection
        self.quickack = None
        sock = transport.get_extra_info("socket")
        if _TCP_QUICKACK is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Acknowledge at once: a broker that leaves Nagle on (Mosquitto's default)
            # otherwise holds its next small packet (a PUBACK) for our delayed ACK (~40 ms).
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
                self.quickack = sock
            except (OSError, AttributeError):
                self.quickack = None

    def requickack(self) -> None:
        """Call after each read: Linux clears TCP_QUICKACK, so set it again."""
        qa = self.quickack
        if qa is not None:
            try:
                qa.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                self.quickack = None

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
