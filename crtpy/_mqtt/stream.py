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

Inline reads (plain TCP, Linux; the switch is ``INLINE_READS``).  A received message
normally wakes the loop thread, which decodes it and posts the user's callback to the
client's :class:`CallbackQueue`, whose worker thread wakes to run it: two hand-offs
before the user's code runs.  Instead, once connected, the loop watches the socket
through a private epoll set ("ep mode": the transport's reading paused, the loop reads
the duplicate socket itself when the set is readable), and the client's callback worker,
whenever its queue runs empty, takes the socket out of that set and waits for it itself
(``poll()`` on the socket and an eventfd that other threads' posts write to), for up to
``INLINE_LINGER_SEC`` of silence.  What it reads it decodes under the driver's lock, like
the loop would; output goes out with a direct send (or, when the transport is busy,
through ``rest`` and the loop), the timer is re-armed through the loop only when the core
needs an earlier deadline.  Before it runs any callback the worker puts the socket back
into the loop's set, so a callback that blocks (say on a publish's result, which needs
the PUBACK read) never stalls reading: the loop reads meanwhile.  Anything but messages
and acknowledgements (a DISCONNECT, a protocol error, the end of the connection) is
handed back to the loop with the socket, to be dealt with as before.  When the loop drops
the connection while a worker waits, it shuts the socket down (waking the worker), which
then closes the descriptors it holds.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .._runtime import fork
from .._runtime.futures import CrtFuture
from .._runtime.spin import Spinner

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
# A submission this soon after the previous one on the same driver goes through the
# loop even when a direct send is possible: a caller publishing in a tight loop is
# better served by the loop batching many packets into one write (in parallel with the
# caller) than by a system call per packet on the caller's thread.
_BURST_SEC = 50e-6

# Inline reads (see the module docstring): the switch, and how long a callback worker
# keeps waiting for the socket with nothing arriving before it goes back to the pool.
INLINE_READS = True  # the MQTT 5 client
# The MQTT 3.1.1 client: off by default.  Measured (bench_mqtt311.py --interleave): ~5-8%
# lower round trips on an idle machine, but 10-30% higher with another process keeping a
# CPU busy (where wake-ups are cheap and the extra system calls of the hand-overs are not).
INLINE_READS_311 = False
INLINE_LINGER_SEC = 0.05
# acknowledgements held back by an inline reader until its callbacks ran go out with
# the user's next write, or this long after they were held at the latest
INLINE_HOLD_SEC = 0.001
# a direct send waits this long at most for an inline reader that holds the lock (it
# decodes one read; longer when the scheduler preempted it): then the loop takes it
_INLINE_LOCK_WAIT_SEC = 0.0002
# After a direct send that the broker answers (a QoS 1 publish, a subscription), the
# inline reader waits for the answer by polling without sleeping for up to this long
# (bounded and adaptive: crtpy._runtime.spin); a reader that blocks is woken for it,
# in parallel with the broker's work.  The answer then reaches a thread whose CPU is
# awake: no wake-up of an idle CPU (20-40 us on a VM) on the way back.
INLINE_SPIN_SEC = 200e-6
# at most this many callback workers wait as readers at once (each holds a pool thread)
INLINE_MAX_READERS = 4
_EPOLL: Any = getattr(select, "epoll", None)
_EPOLLIN = getattr(select, "EPOLLIN", 1)
_POLLIN = getattr(select, "POLLIN", 1)
_POLLHUP_ERR = getattr(select, "POLLHUP", 16) | getattr(select, "POLLERR", 8) | getattr(select, "POLLNVAL", 32)
_HAVE_INLINE = _EPOLL is not None and hasattr(os, "eventfd") and bool(_SEND_FLAGS)
_RECV_SIZE = 65536
_SECOND_READ = True
# what one inline read did
_READ, _AGAIN, _DROPPED, _HANDED = 0, 1, 2, 3
_readers_lock = threading.Lock()
_readers = [0]
_log = logging.getLogger("crtpy.mqtt")


@fork.on_fork_child
def _reset_readers_in_child() -> None:
    # the parent's reading workers do not exist in the child (and may have held the lock)
    global _readers_lock
    _readers_lock = threading.Lock()
    _readers[0] = 0


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
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = self.loop.create_future()
        # ep mode and inline reads (see the module docstring); changed under ``lock``
        self.ep: Any = None  # the loop's private epoll set, in ep mode
        self.ep_has_sock = False  # the socket is in ``ep`` (no worker reads it)
        self.reader = False  # a callback worker owns reading
        self.poller: Any = None  # the reader's poll set: the socket and ``wake_fd``
        self.wake_fd = -1
        self.read_error: BaseException | None = None
        self.owe_quickack = False
        # An answer is due (see INLINE_SPIN_SEC): set by a direct send, taken by the
        # inline reader, which is woken when it blocks in poll() (``reader_asleep``).
        self.spinner = Spinner()
        self.answer_due = False
        self.reader_asleep = False

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

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
                # (maybe on a worker or user thread) only stop re-arming: the descriptor
                # and the loop's watch are the loop's to close, with the connection
                self.quickack = None

    def _close_quickack(self) -> None:
        # The duplicate descriptor must not keep the connection open after the transport
        # closes it.  Closed under the lock: no direct send is using it meanwhile.  A
        # worker reading it inline is woken instead (shutdown); it closes what it holds.
        with self.lock:
            dup = self.dup
            ep, wake = self.ep, self.wake_fd
            self.dup = self.quickack = self.direct = None
            self.ep = self.poller = None
            self.wake_fd = -1
            self.ep_has_sock = False
            if ep is not None:
                try:
                    self.loop.remove_reader(ep.fileno())
                except (RuntimeError, ValueError, OSError):
                    pass
            if self.reader:
                if dup is not None:
                    try:
                        dup.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                if wake >= 0:
                    try:
                        os.eventfd_write(wake, 1)
                    except OSError:
                        pass
                return
            if dup is not None:
                dup.close()
            if ep is not None:
                ep.close()
            if wake >= 0:
                os.close(wake)

    # -- ep mode (loop thread) ------------------------------------------------------------
    def enter_ep(self, enabled: bool) -> None:
        """(loop, connected) Watch the socket through a private epoll set instead of the
        transport, so that a callback worker can take reading over (see the module
        docstring).  Only on a direct (plain TCP) connection, when ``enabled`` (the
        driver's switch: INLINE_READS or INLINE_READS_311)."""
        sock = self.dup  # (the socket direct sends use; reads go to the socket itself)
        t = self.transport
        if (not enabled or not _HAVE_INLINE or self.direct is None or sock is None or self.ep is not None
                or t is None or t.is_closing()):
            return
        try:
            ep = _EPOLL()
        except OSError:
            return
        try:
            wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            ep.close()
            return
        fd = sock.fileno()
        poller = select.poll()
        poller.register(fd, _POLLIN)
        poller.register(wake, _POLLIN)
        ep.register(fd, _EPOLLIN)
        with self.lock:
            self.ep, self.poller, self.wake_fd = ep, poller, wake
            self.ep_has_sock = True
        t.pause_reading()
        self.loop.add_reader(ep.fileno(), self._ep_readable)

    def _ep_readable(self) -> None:
        """(loop) The socket is readable in ep mode and no worker reads it: read it here."""
        with self.lock:
            sock = self.dup
            if self.reader or not self.ep_has_sock or sock is None:
                return  # stale: a worker took the socket meanwhile
            try:
                data = sock.recv(_RECV_SIZE, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.read_failed(exc)
                return
            if not data:
                self.read_failed(None)
                return
            self.answer_due = False  # (what was due for an inline reader came here)
            self.data_received(data)

    def read_failed(self, exc: BaseException | None) -> None:
        """(loop) Reading in ep mode found the end of the connection (``exc`` None: the
        server closed) or an error: close the transport, as it would have."""
        ep = self.ep
        if ep is not None:
            try:
                self.loop.remove_reader(ep.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
        t = self.transport
        if t is None or t.is_closing():
            return
        if exc is None:
            t.close()
        else:
            self.read_error = exc
            t.abort()

    def rearm(self) -> None:
        """(loop, under ``lock``) Put the socket back into the loop's set after a
        worker handed reading back to the loop."""
        sock, ep = self.dup, self.ep
        if sock is not None and ep is not None and not self.ep_has_sock and not self.reader:
            ep.register(sock.fileno(), _EPOLLIN)
            self.ep_has_sock = True

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_quickack()
        if exc is None and self.read_error is not None:
            exc = self.read_error  # type: ignore[assignment]
            self.read_error = None
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
            if self.incoming:  # posted earlier by other threads: those go first
                self.incoming.append(item)
                self._drain()
                return
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

    inline_busy = False  # an inline reader holds ``lock`` (briefly: one read's decoding)

    def _lock_for_direct(self) -> bool:
        """(a user thread) Take ``lock`` for a direct send: at once, or after waiting
        for an inline reader that holds it (it decodes one read, then lets go); False
        when the loop holds it (the operation then goes through the loop's inbox)."""
        lock = self.lock
        if lock.acquire(False):
            return True
        return bool(self.inline_busy) and bool(lock.acquire(True, _INLINE_LOCK_WAIT_SEC))

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

    def _send_locked(self, sock: socket.socket, data: bytes, answer: bool = False) -> None:
        """(under ``lock``) Write ``data``; what the socket does not take (all of it on
        an error) is left in ``rest`` for the loop, which writes it before anything
        else (or, on a broken connection, finds the error).  ``answer``: the broker
        answers it (the inline reader spins for that, see INLINE_SPIN_SEC)."""
        try:
            n = sock.send(data, _SEND_FLAGS)
        except OSError:
            n = 0
        proto = self.protocol
        if proto is not None and proto.ep is not None:
            # In ep mode the answer is read inline: with quick acknowledgements on as it
            # arrives, a broker's Nagle does not hold its next small packet (a PUBACK)
            # back, and both usually come in one read (one wake-up of the reader).
            proto.owe_quickack = False
            proto.requickack()
            if answer and n and INLINE_SPIN_SEC:
                # (cleared by whoever reads next: the loop, or a reader that stops)
                proto.answer_due = True
                if proto.reader_asleep and proto.spinner.ready_to_spin():
                    try:
                        os.eventfd_write(proto.wake_fd, 1)
                    except OSError:  # (closed with the connection: nothing to wake)
                        pass
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

    @staticmethod
    def _take_output_only(output: list[bytes]) -> bytes:
        data = b"".join(output)
        output.clear()
        return data

    # Output an inline reader held back until the callbacks it posted ran (the 3.1.1
    # PUBACKs); written before anything later, by whoever writes next.
    held = b""

    def _take_output(self, output: list[bytes]) -> bytes:
        """The core's output (``output``) joined, after ``rest`` and ``held`` (cleared)."""
        held = self.held
        if held:
            self.held = b""
            output.insert(0, held)
        rest = self.rest
        if rest:
            self.rest = b""
            output.insert(0, rest)
        data = b"".join(output) if len(output) > 1 else output[0]
        output.clear()
        return data


    # -- inline reads (a callback worker; see the module docstring) --------------------
    callbacks: Any
    listeners: Any

    def _feed_inline(self, data: bytes) -> bool:
        """(a reading worker, under ``lock``) Feed ``data`` to the core and carry out
        what it asks for from this thread; False when the result must be handed to the
        loop (``_inline_handback`` was scheduled, the worker gives reading up)."""
        raise NotImplementedError

    def _write_inline(self) -> None:
        """(a reading worker, under ``lock``) Write the core's output: directly when the
        transport is quiet, else through ``rest`` and the loop."""
        data = self._take_output(self.core.output)
        sock = self._direct_socket_locked()
        if sock is not None:
            self._send_locked(sock, data)
            return
        self.rest = data
        try:
            self.loop_thread.loop.call_soon_threadsafe(self._flush_rest)
        except RuntimeError:
            pass

    inline_flush_at = 0.0
    inline_reads = 0  # reads done by callback workers (tests look at it)

    def _flush_inline(self) -> None:
        """(a reading worker) Send what was held back, hand to the loop what waits in
        the inbox."""
        if self.held:
            with self.lock:
                if self.held:
                    self._write_inline()
        if self.incoming and not self.incoming_scheduled:
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)

    def _inline_handback(self) -> None:
        """(loop) A reading worker handed the core's latest events over: carry them
        out, and watch the socket again."""
        with self.lock:
            self.after_core()
            proto = self.protocol
            if proto is not None:
                proto.rearm()

    def _inline_read(self) -> bool:
        """(the callback worker of this client, its queue empty) Wait for the socket
        and read it here, for as long as callbacks keep coming within
        INLINE_LINGER_SEC.  Returns True when callbacks were posted (the worker runs
        them, with the socket back in the loop's watch, then calls again)."""
        proto = self.protocol
        if proto is None or not proto.ep_has_sock or proto.reader or self.listeners:
            self._leave_inline()
            return False
        with _readers_lock:
            full = _readers[0] >= INLINE_MAX_READERS
            if not full:
                _readers[0] += 1
        if full:
            self._leave_inline()
            return False
        more = False
        try:
            with self.lock:
                if proto is not self.protocol or proto.reader or not proto.ep_has_sock:
                    return False
                sock, ep, poller, wake = proto.dup, proto.ep, proto.poller, proto.wake_fd
                if sock is None or ep is None or poller is None or wake < 0:
                    return False
                # Under the lock, with ``reader``: the loop must never find the set
                # readable while ignoring it (it would spin on the level-triggered set,
                # holding the GIL, until this thread got the GIL back: milliseconds).
                # A direct send meanwhile waits for the lock (``inline_busy``).
                self.inline_busy = True
                try:
                    ep.unregister(sock.fileno())
                except OSError:
                    return False
                finally:
                    self.inline_busy = False
                proto.ep_has_sock = False
                proto.reader = True  # the loop ignores the set from now on
            more = self._read_inline_here(proto, sock, ep, poller, wake)
            return more
        finally:
            with _readers_lock:
                _readers[0] -= 1
            if not more:
                proto.answer_due = False  # (no reader: the loop reads what comes)
                self._leave_inline()

    def _leave_inline(self) -> None:
        """(a callback worker that stops reading) What waits in the inbox (PUBACKs
        after callbacks) goes to the loop."""
        try:
            if self.held:
                self.loop_thread.call_soon(self._flush_rest)
            # (MQTT 5: not while the PUBACK flush timer is armed; it drains them soon,
            # together)
            if self.incoming and not self.incoming_scheduled and not getattr(self, "puback_flush_armed", False):
                self.incoming_scheduled = True
                self.loop_thread.call_soon(self._drain)
        except Exception:  # noqa: BLE001 - the loop is gone: nothing to flush
            _log.debug("no loop to flush the MQTT inbox", exc_info=True)

    def _read_inline_here(self, proto: Any, sock: socket.socket, ep: Any, poller: Any, wake: int) -> bool:
        """The body of :meth:`_inline_read`, entered owning reading (``proto.reader``)."""
        q = self.callbacks
        lock = self.lock
        fd = sock.fileno()
        rearm = True  # on leaving: put the socket back into the loop's set
        end = 0.0
        try:
            if proto.owe_quickack and not self.incoming and not self.held:
                # (with PUBACKs waiting, their send -- soon -- does it)
                proto.owe_quickack = False
                proto.requickack()
            while True:
                if not q.reader_waiting(wake):
                    if self.incoming or self.held:
                        # the PUBACKs of callbacks that ran leave now, not after the
                        # callbacks to run (which may block)
                        self._flush_inline()
                    return True  # callbacks to run first
                now = time.monotonic()
                if not end:
                    end = now + INLINE_LINGER_SEC
                until = end
                if self.incoming or self.held:
                    flush_at = self.inline_flush_at
                    if flush_at <= now:
                        self._flush_inline()
                    elif flush_at < until:
                        until = flush_at
                try:
                    ready = _wait_readable(proto, poller.poll, until - now)
                finally:
                    q.reader_woken()
                readable = False
                for rfd, _ev in ready:
                    if rfd == fd:
                        readable = True
                    elif rfd == wake:
                        try:
                            os.eventfd_read(wake)
                        except OSError:
                            pass
                if readable:
                    with lock:
                        self.inline_busy = True
                        try:
                            status = self._read_one(proto, sock)
                        finally:
                            self.inline_busy = False
                    if status == _DROPPED:
                        return False
                    if status == _HANDED:
                        rearm = False
                        return False
                    if status == _READ:
                        end = 0.0  # something came: linger afresh
                        if not q.has_items() and not self.incoming and not self.held:
                            proto.owe_quickack = False
                            proto.requickack()
                        continue
                elif proto.dup is not sock:
                    return False  # dropped by the loop meanwhile (closed below)
                if q.has_items():
                    return True
                if time.monotonic() >= end:
                    return False
        except Exception:  # noqa: BLE001 - reading must go on, on the loop
            if self.loop_thread.loop.is_closed():
                rearm = False  # the loop is gone (interpreter exit): nobody to read
            else:
                _log.exception("MQTT inline read failed; the loop reads from here on")
            return False
        finally:
            q.reader_woken()  # before any descriptor is closed: posts must not write to it
            dropped = False
            with lock:
                if proto.dup is not sock:
                    dropped = True  # the loop dropped the connection while this thread read
                elif rearm and not proto.ep_has_sock and proto.ep is ep:
                    try:
                        ep.register(fd, _EPOLLIN)
                        proto.ep_has_sock = True
                    except OSError:
                        pass
                proto.reader = False
            if dropped:  # ours to close
                sock.close()
                ep.close()
                os.close(wake)

    def _read_one(self, proto: Any, sock: socket.socket) -> int:
        """(a reading worker, under ``lock``) Read once and feed the core."""
        if proto.dup is not sock:
            return _DROPPED
        try:
            data = sock.recv(_RECV_SIZE, _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            return _AGAIN
        except OSError as exc:
            self.loop_thread.loop.call_soon_threadsafe(proto.read_failed, exc)
            return _HANDED
        if not data:
            self.loop_thread.loop.call_soon_threadsafe(proto.read_failed, None)
            return _HANDED
        proto.owe_quickack = True
        self.inline_reads += 1
        if not self._feed_inline(data):
            return _HANDED
        if _SECOND_READ and len(data) < _RECV_SIZE:
            # Reading acknowledged what came, which often releases the broker's next
            # packet (a PUBACK held by its Nagle): take it now, while this thread runs,
            # rather than after the callbacks (in parallel with the user's next send,
            # or through the loop).
            try:
                data = sock.recv(_RECV_SIZE, _SEND_FLAGS)
            except OSError:
                return _READ  # (the next poll finds what it is)
            if not data:
                self.loop_thread.loop.call_soon_threadsafe(proto.read_failed, None)
                return _HANDED
            if not self._feed_inline(data):
                return _HANDED
        return _READ


def _wait_readable(proto: Any, poll: Callable[[int], list[Any]], timeout: float) -> list[Any]:
    """(an inline reader) ``poll`` for up to ``timeout`` seconds; spinning first when
    an answer is due (see INLINE_SPIN_SEC) and the wait is not about to end anyway."""
    end = time.monotonic() + timeout
    while True:
        if proto.answer_due:
            proto.answer_due = False
            spinner: Spinner = proto.spinner
            if timeout >= INLINE_SPIN_SEC and spinner.wanted():
                ready = spinner.spin(poll, INLINE_SPIN_SEC, polite=True)
                if ready:
                    return ready
                timeout = end - time.monotonic()
        # ``reader_asleep`` before the last look at ``answer_due``, the sender sets them
        # the other way round: one of the two sees the other's
        proto.reader_asleep = True
        try:
            if not proto.answer_due:
                return poll(max(0, int(timeout * 1000) + 1))
        finally:
            proto.reader_asleep = False


def inline_reader(driver: Any) -> Callable[[], bool]:
    """The ``CallbackQueue.reader`` of ``driver``, holding it weakly (the queue belongs
    to the driver)."""
    import weakref

    ref = weakref.ref(driver)

    def read() -> bool:
        d = ref()
        return d is not None and bool(d._inline_read())

    return read


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
