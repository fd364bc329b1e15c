"""The asyncio side of an MQTT connection that both drivers (MQTT 5 and 3.1.1) share:
opening the connection, the stream protocol (transport, TCP_QUICKACK, the ``closed``
future; each driver's subclass feeds the received bytes to its own protocol core), the
core's deadline timer, the reconnect wait, and the hand-over of operations from user
threads to the loop (:class:`LoopInbox`), including the direct send.

Direct sends (plain TCP only).  An operation submitted from a user thread normally
hops to the loop thread, which writes it.  When the connection is quiet -- connected,
nothing queued or waiting ahead of the operation, nothing left in the transport's write
buffer -- the submitting thread instead runs the protocol core itself and writes the
packet with a non-blocking ``send()`` on a duplicate of the socket: one thread hand-off
less per operation (and per round trip).  This is safe because every piece of code that
touches the core or writes to the transport holds the driver's ``lock``:

* the loop thread holds it for each of its entry points (received bytes, timers, the
  inbox drain, connection events), so a direct send never interleaves with the loop's
  writes, and sees the core in a consistent state;
* the transport's write buffer only grows through writes made under the lock, so a
  buffer found empty under the lock stays empty (nothing of the loop's can be written
  later than, or in the middle of, the direct send);
* a partial direct send leaves its remainder in ``rest``: the loop writes it before
  anything else (no direct send happens while it is there), and it is dropped with the
  connection (a QoS 1 publish is then re-sent from the core's in-flight table);
* the duplicate socket is closed under the lock, so a send never reaches a descriptor
  that was closed (and perhaps reused).
"""
from __future__ import annotations

import asyncio
import collections
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .._runtime.futures import CrtFuture

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
# A submission this soon after the previous one on the same driver goes through the
# loop even when a direct send is possible: a caller publishing in a tight loop is
# better served by the loop batching many packets into one write (in parallel with the
# caller) than by a system call per packet on the caller's thread.
_BURST_SEC = 50e-6


class MqttStreamProtocol(asyncio.Protocol):
    """``lock`` is the driver's lock (the duplicate socket is closed under it);
    ``direct`` says whether the driver may send directly on this connection (plain TCP,
    no proxy, no WebSocket): then ``direct`` becomes the duplicate socket to send on."""

    def __init__(self, lock: Any = None, direct: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.quickack: socket.socket | None = None
        self.direct: socket.socket | None = None
        self.dup: socket.socket | None = None
        self.lock = lock if lock is not None else threading.RLock()
        self.want_direct = direct and bool(_SEND_FLAGS)
        self.closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection
        self._close_quickack()
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        quickack = _TCP_QUICKACK is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        direct = (self.want_direct and transport.get_extra_info("ssl_object") is None
                  and sock.type == socket.SOCK_STREAM)
        if not quickack and not direct:
            return
        # Acknowledge at once: a broker that leaves Nagle on (Mosquitto's default)
        # otherwise holds its next small packet (a PUBACK) for our delayed ACK (~40 ms).
        # The option is set through a socket object of our own on a duplicate of the
        # descriptor: the transport's socket (uvloop's in particular) builds a new
        # socket object, with an extra system call, on every setsockopt().  The same
        # duplicate carries direct sends (see the module docstring).
        try:
            if quickack:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            fd = os.dup(sock.fileno())
            try:
                dup = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
            except BaseException:
                os.close(fd)
                raise
        except (OSError, AttributeError, ValueError):
            return
        with self.lock:
            self.dup = dup
            self.quickack = dup if quickack else None
            self.direct = dup if direct else None

    def requickack(self) -> None:
        """Call after each read: Linux clears TCP_QUICKACK, so set it again."""
        qa = self.quickack
        if qa is not None:
            try:
                qa.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                self._close_quickack()

    def _close_quickack(self) -> None:
        # The duplicate descriptor must not keep the connection open after the transport
        # closes it.  Closed under the lock: no direct send is using it meanwhile.
        with self.lock:
            dup = self.dup
            self.dup = self.quickack = self.direct = None
            if dup is not None:
                dup.close()

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
    to the loop thread through a lock-free deque, several per loop wake-up, or written
    directly by the submitting thread (see the module docstring).

    The class provides ``loop_thread``, ``incoming``, ``incoming_scheduled``, ``lock``
    (an RLock: the loop may re-enter through crtpy's own callbacks), ``rest``,
    ``last_submit``, ``protocol`` and the methods ``_handle_item(item)``,
    ``after_core()`` (which must write ``rest`` before the core's output) and
    ``_drain()`` (which must clear ``incoming_scheduled`` *before* emptying
    ``incoming``: an item appended while the flag still read True is then always seen
    by that drain).  Loop-side entry points that touch the core hold ``lock``."""

    loop_thread: Any
    incoming: collections.deque[Any]
    incoming_scheduled: bool
    lock: Any
    rest: bytes
    last_submit: float
    protocol: Any
    core: Any
    timer: CoreTimer

    def _handle_item(self, item: Any) -> None:
        raise NotImplementedError

    def after_core(self) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

    def _post(self, item: Any) -> None:
        if self.loop_thread.in_thread():
            with self.lock:
                self._handle_item(item)
                self.after_core()
            return
        self.incoming.append(item)
        if not self.incoming_scheduled:
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)

    def _direct_socket(self, now: float) -> socket.socket | None:
        """(a user thread) The socket to write a new operation on from this thread,
        or None when it must go through the loop.  Checked again under ``lock`` with
        :meth:`_direct_socket_locked`."""
        last = self.last_submit
        self.last_submit = now
        proto = self.protocol
        if proto is None or proto.direct is None or now - last < _BURST_SEC:
            return None
        if self.loop_thread.in_thread():
            return None
        return proto.direct  # type: ignore[no-any-return]

    def _direct_socket_locked(self) -> socket.socket | None:
        """(under ``lock``) The direct socket if the transport is quiet: open, with
        nothing buffered and no remainder of an earlier direct send."""
        proto = self.protocol
        if proto is None or self.rest:
            return None
        sock: socket.socket | None = proto.direct
        t = proto.transport
        if sock is None or t is None or t.is_closing() or t.get_write_buffer_size():
            return None
        return sock

    def _send_locked(self, sock: socket.socket, data: bytes) -> None:
        """(under ``lock``) Write ``data``; what the socket does not take (all of it on
        an error) is left in ``rest`` for the loop, which writes it before anything
        else (or, on a broken connection, finds the error)."""
        try:
            n = sock.send(data, _SEND_FLAGS)
        except OSError:
            n = 0
        if n < len(data):
            self.rest = data[n:]
            try:
                self.loop_thread.loop.call_soon_threadsafe(self._flush_rest)
            except RuntimeError:  # the loop is gone (interpreter exit): nothing more to do
                pass

    def _flush_rest(self) -> None:
        with self.lock:
            self.after_core()

    def _deadline_added(self, deadline: float) -> None:
        """(a user thread, under ``lock``) A directly sent operation brought
        ``deadline``: have the loop re-arm the timer if it fires too late for it."""
        t = self.timer
        if t.handle is None or deadline < t.at - 0.001:
            self.loop_thread.loop.call_soon_threadsafe(self._follow_deadline)

    def _follow_deadline(self) -> None:
        with self.lock:
            self.timer.follow(self.core.next_deadline())

    def _stats(self) -> tuple[int, int, int, int]:
        with self.lock:
            return self.core.stats()  # type: ignore[no-any-return]

    def _take_output(self, output: list[bytes]) -> bytes:
        """The core's output (``output``) joined, after ``rest`` (cleared)."""
        rest = self.rest
        if rest:
            self.rest = b""
            output.insert(0, rest)
        data = b"".join(output) if len(output) > 1 else output[0]
        output.clear()
        return data


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
