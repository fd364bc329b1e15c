"""The asyncio side of an MQTT connection that both drivers (MQTT 5 and 3.1.1) share:
the transport, TCP_QUICKACK, the ``closed`` future.  Each driver's subclass feeds the
received bytes to its own protocol core."""
from __future__ import annotations

import asyncio
import os
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
        self._close_quickack()
        sock = transport.get_extra_info("socket")
        if _TCP_QUICKACK is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Acknowledge at once: a broker that leaves Nagle on (Mosquitto's default)
            # otherwise holds its next small packet (a PUBACK) for our delayed ACK (~40 ms).
            # The option is set through a socket object of our own on a duplicate of the
            # descriptor: the transport's socket (uvloop's in particular) builds a new
            # socket object, with an extra system call, on every setsockopt().
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
                fd = os.dup(sock.fileno())
                try:
                    self.quickack = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
                except BaseException:
                    os.close(fd)
                    raise
            except (OSError, AttributeError, ValueError):
                self.quickack = None

    def requickack(self) -> None:
        """Call after each read: Linux clears TCP_QUICKACK, so set it again."""
        qa = self.quickack
        if qa is not None:
            try:
                qa.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                self._close_quickack()

    def _close_quickack(self) -> None:
        # The duplicate descriptor must not keep the connection open after the transport closes it.
        qa = self.quickack
        self.quickack = None
        if qa is not None:
            qa.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_quickack()
        if not self.closed.done():
            self.closed.set_result(exc)
