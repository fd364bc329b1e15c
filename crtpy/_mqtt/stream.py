"""The asyncio side of an MQTT connection that both drivers (MQTT 5 and 3.1.1) share:
opening the connection, the stream protocol (transport, TCP_QUICKACK, the ``closed``
future; each driver's subclass feeds the received bytes to its own protocol core), the
core's deadline timer and the reconnect wait."""
from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from .._runtime.futures import CrtFuture

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


class CoreTimer:
    """One loop timer that follows a protocol core's next deadline: re-armed only when
    the deadline moves earlier, so a steady stream of packets does not re-arm it."""

    __slots__ = ("at", "fire", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[], None]) -> None:
        self.loop = loop
        self.fire = fire
        self.handle: asyncio.TimerHandle | None = None
        self.at = 0.0

    def follow(self, deadline: float | None) -> None:
        """``deadline`` on the ``time.monotonic`` clock, or None for none."""
        if deadline is not None and (self.handle is None or deadline < self.at - 0.001):
            if self.handle is not None:
                self.handle.cancel()
            self.at = deadline
            self.handle = self.loop.call_at(self.loop.time() + max(0.0, deadline - time.monotonic()), self._fired)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fired(self) -> None:
        self.handle = None
        self.fire()


async def open_stream(host: str, port: int, factory: Callable[[], asyncio.BaseProtocol], *, proxy: Any,
                      bootstrap: Any, socket_options: Any, tls_ctx: Any, websocket: bool,
                      on_transport: Callable[[asyncio.BaseTransport], None] | None = None,
                      ) -> tuple[asyncio.BaseTransport, Any]:
    """Open one MQTT connection (directly or through an HTTP proxy tunnel, with TLS when
    ``tls_ctx`` is set).  With ``websocket``, ``factory`` makes a WebSocket adapter whose
    handshake is awaited; the adapter's inner protocol is returned.  ``on_transport``
    sees the transport as soon as it exists (to close it during the handshake)."""
    from .._net.connect import open_connection

    tls_options = tls_ctx.new_connection_options() if tls_ctx is not None else None
    if proxy is not None:
        from .._http.proxy import open_tunnel

        transport, proto = await open_tunnel(
            host, port, proxy, protocol_factory=factory, bootstrap=bootstrap,
            socket_options=socket_options, tls_connection_options=tls_options)
    else:
        transport, proto = await open_connection(
            host, port, protocol_factory=factory, bootstrap=bootstrap,
            socket_options=socket_options, tls_connection_options=tls_options)
    if on_transport is not None:
        on_transport(transport)
    if websocket:
        try:
            await proto.handshake_done  # type: ignore[attr-defined]
        except BaseException:
            transport.close()
            raise
        proto = proto.inner  # type: ignore[attr-defined]
    return transport, proto


async def wait_or_timeout(wake: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less if ``wake`` is set (it is cleared first)."""
    wake.clear()
    try:
        await asyncio.wait_for(wake.wait(), delay)
    except asyncio.TimeoutError:
        pass


class LoopInbox:
    """Mixin of both drivers: items (operations, control tuples) handed from any thread
    to the loop thread through a lock-free deque, several per loop wake-up.

    The class provides ``loop_thread``, ``incoming``, ``incoming_scheduled`` and the
    methods ``_handle_item(item)``, ``after_core()`` and ``_drain()`` (which must clear
    ``incoming_scheduled`` *before* emptying ``incoming``: an item appended while the flag
    still read True is then always seen by that drain)."""

    loop_thread: Any
    incoming: collections.deque[Any]
    incoming_scheduled: bool

    def _handle_item(self, item: Any) -> None:
        raise NotImplementedError

    def after_core(self) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

    def _post(self, item: Any) -> None:
        if self.loop_thread.in_thread():
            self._handle_item(item)
            self.after_core()
            return
        self.incoming.append(item)
        if not self.incoming_scheduled:
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)


def completing(fut: CrtFuture, convert: Callable[[Any], Any]) -> Callable[[Any, BaseException | None], None]:
    """The ``done(result, exc)`` of a core operation that settles ``fut`` with
    ``convert(result)`` (or the error; a failing ``convert`` fails ``fut``)."""

    def done(result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            fut.try_set_exception(exc)
        else:
            try:
                fut.try_set_result(convert(result))
            except BaseException as e:  # noqa: BLE001 - handed to the future
                fut.try_set_exception(e)

    return done
