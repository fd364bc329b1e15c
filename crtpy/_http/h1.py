"""HTTP/1.1 client engine, shared by ``crtpy.http`` and the S3 client (``crtpy._s3.conn``).

Response framing is parsed by ``httptools`` (llhttp) straight from the protocol's read
buffer; body pieces reach the stream as the ``bytes`` objects the parser makes, with no
further copy.  The rest of a large body skips the parser: on plain TCP the engine
``recv()``s it itself, straight into the ``bytes`` handed on (one copy out of the kernel);
under TLS the transport's own ``bytes`` are handed on.  Requests are sent one at a time
on a connection (keep-alive, no pipelining).

All methods run on the connection's event loop, except those marked "any thread",
which hop onto it -- with two exceptions, which spare a request on plain TCP every
thread hand-off: a bodiless request activated on an idle connection is written by the
activating thread itself (``H1Connection.send_direct``), and its response is read and
parsed by the thread that waits in ``completion_future.result()``
(``H1Connection.caller_read``; the loop reads it when nobody waits).

Public streams (``H1Stream`` made for an ``HttpClientStream``) deliver their events
through the connection's Dispatcher; :meth:`H1Connection.exchange` runs an exchange
given as wire bytes (:class:`WireRequest`) from a coroutine on the loop (the S3 client).
"""
from __future__ import annotations

import asyncio
import collections
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import httptools

from .._errors import error
from .._net import errors as _net_errors
from .._runtime.futures import CrtFuture
from .._runtime.spin import Spinner
from .body import known_length
from .common import BODY_CHUNK, Dispatcher, call_on_loop, closed_error, helping_future, read_chunk
from .transport import ConnProtocol

_get_running_loop = asyncio._get_running_loop
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
_monotonic = time.monotonic
# caller reads (see H1Connection.caller_read) need epoll sets (Linux)
_EPOLL: Any = getattr(select, "epoll", None)
_EPOLLIN = getattr(select, "EPOLLIN", 1)
_POLLIN = getattr(select, "POLLIN", 1)
# a thread reading its own response re-checks the connection at least this often (ms)
_READER_SLICE_MS = 250
CALLER_BUFFER = 64 * 1024
# ep mode ends after this many responses in a row arrive with nobody waiting for them
_EP_MAX_MISSES = 4
# A caller waiting for the start of its response polls the socket without sleeping for up
# to SPIN_SEC first (the server's think time; bounded and adaptive: crtpy._runtime.spin).
SPIN_SEC = 100e-6

CONTINUE_TIMEOUT_SEC = 1.0
# the rest of a body with at least this many bytes still to come skips the parser (see
# the module docstring)
RAW_BODY_MIN = 256 * 1024
_NO_BODY_STATUS = (204, 304)
# wire request bodies (see WireRequest) are written in slices of this size
WRITE_SLICE = 1024 * 1024
# reading a large body straight from the socket: bytes per recv(), and per wake-up
# (measured: larger reads, and reads sized by FIONREAD, cost more in page faults -- the
# allocator maps and unmaps their buffers -- than they save)
RAW_READ = 256 * 1024
RAW_BURST = 4 * 1024 * 1024


def encode_head(method: str, target: str, headers: list[tuple[str, str]],
                extra: list[tuple[str, str]] | None = None) -> bytes:
    """Serialize a request line and header block."""
    pairs = headers if extra is None else [*headers, *extra]
    text = f"{method} {target} HTTP/1.1\r\n" + "".join([f"{n}: {v}\r\n" for n, v in pairs]) + "\r\n"
    # one scan of the whole head: exactly the line breaks put there above, and no others
    if text.count("\n") != len(pairs) + 2 or text.count("\r") != len(pairs) + 2 or \
            not method or not target or " " in method or " " in target:
        _check_head(method, target, pairs)
    for n, _ in pairs:
        if not n or ":" in n:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_NAME")
    return text.encode("latin-1")


def _decode(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]


def _check_head(method: str, target: str, pairs: list[tuple[str, str]]) -> None:
    """Raise the error that fits the first bad part of a request head."""
    for text in (method, target):
        if not text or any(c in text for c in " \r\n"):
            raise error("AWS_ERROR_HTTP_INVALID_PATH" if text is target else "AWS_ERROR_HTTP_INVALID_METHOD")
    for name, value in pairs:
        if not name or "\r" in name or "\n" in name or ":" in name:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_NAME")
        if "\r" in value or "\n" in value:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_VALUE")


class WireRequest:
    """A request given as bytes ready for the wire (see :meth:`H1Connection.exchange`):
    an encoded head and body pieces (buffers), written in slices as the transport takes
    them."""

    __slots__ = ("finish_after_success", "head", "idle_timeout", "on_sent", "pieces")

    def __init__(self, head: bytes, pieces: Sequence[Any] | None, *, idle_timeout: float,
                 on_sent: Callable[[int], None] | None = None,
                 finish_after_success: bool = True) -> None:
        self.head = head
        self.pieces = pieces
        self.idle_timeout = idle_timeout
        self.on_sent = on_sent
        # a server may answer (2xx) before it has read the whole body (nginx does, then
        # drains): the rest is still sent and the connection stays reusable
        self.finish_after_success = finish_after_success


class _Outcome:
    """Stands between an engine stream and the receiver of :meth:`H1Connection.exchange`:
    forwards the events and resolves the exchange's asyncio future at completion."""

    __slots__ = ("_done", "_on_body", "_on_body_cb", "_on_response", "_on_response_cb", "_response_status_code")

    def __init__(self, public: Any, done: asyncio.Future[BaseException | None]) -> None:
        self._on_response = public._on_response
        self._on_body = public._on_body
        self._on_response_cb = self._on_body_cb = True
        self._response_status_code: int | None = None
        self._done = done

    def _on_complete(self, exc: BaseException | None) -> None:
        if not self._done.done():
            self._done.set_result(exc)


class H1Stream:
    """Engine side of one request/response exchange."""

    __slots__ = (
        "__weakref__",
        "_raw_headers",
        "activated",
        "body_task",
        "body_written",
        "conn",
        "continue_event",
        "direct",
        "done",
        "failed",
        "got_final",
        "has_cbs",
        "head_method",
        "public",
        "request",
        "saw_100",
        "status",
        "until_eof",
        "waited",
        "wire",
    )

    def __init__(self, conn: H1Connection, public: Any, request: Any) -> None:
        self.conn = conn
        self.public = public
        self.request = request
        self.activated = False
        self.done = False
        self.status: int | None = None
        self.head_method = request is not None and request.method.upper() == "HEAD"
        self.failed = False
        self.wire: WireRequest | None = None
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self.got_final = False
        self.saw_100 = False
        self.continue_event: asyncio.Event | None = None
        self.body_task: asyncio.Task[None] | None = None
        self.until_eof = False
        self.body_written = False
        self.has_cbs = public._on_response_cb is not None or public._on_body_cb is not None
        self.direct = False  # the whole head went out through send_direct
        self.waited = False  # a thread waited for the completion (read_here)

    def make_future(self) -> CrtFuture:
        fut = helping_future(self.conn.dispatch)
        if self.conn._direct is not None and hasattr(fut, "_reader"):
            fut._reader = self
        return fut

    def read_here(self, runner: Any, deadline: float | None) -> None:
        """(the thread waiting for this stream's completion) Read the response here if
        the connection lets this thread do so (see ``H1Connection.caller_read``)."""
        if self.direct and not self.done:
            self.waited = True
            self.conn.caller_read(self, runner, deadline)

    # -- any thread -----------------------------------------------------------------
    def activate(self) -> None:
        self.conn.public_check()
        if self.activated:
            return
        self.activated = True
        conn = self.conn
        if conn._direct is not None and _get_running_loop() is not conn.loop and conn.send_direct(self):
            return
        call_on_loop(conn.loop, conn._enqueue, self)

    def update_window(self, increment: int) -> None:
        self.conn.update_window(increment)

    def write_data(self, body: Any, end_stream: bool) -> CrtFuture:
        raise error("AWS_ERROR_HTTP_MANUAL_WRITE_NOT_ENABLED")


class H1Connection:
    """The engine of one HTTP/1.1 connection."""

    raw_reads = True  # large plain-TCP bodies are read from the socket by the engine
    raw_burst = RAW_BURST  # bytes read per readiness of the socket, at most
    #: when set, where the raw reader's buffers come from (``take() -> bytearray``): the
    #: body is recv_into() reused memory and handed on as memoryviews, which the consumer
    #: gives back to the pool once done with them (no allocation and page faults per read)
    raw_pool: Any = None

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: ConnProtocol, *,
                 shutdown_future: CrtFuture, dispatcher: Dispatcher,
                 manual_window_management: bool = False, initial_window_size: int | None = None,
                 forward_proxy: tuple[str, list[tuple[str, str]]] | None = None) -> None:
        self.loop = loop
        self.protocol = protocol
        self.transport = protocol.transport
        self.shutdown_future = shutdown_future
        self.dispatch = dispatcher
        self.before_shutdown: Callable[[], Any] | None = None
        self._queue: collections.deque[H1Stream] = collections.deque()
        self._current: H1Stream | None = None
        self._open = True
        self._closing = False
        self._error: BaseException | None = None
        self._parser: Any = httptools.HttpResponseParser(self)
        self.raw_body_left = 0
        self._raw_length: int | None = None
        self._body_seen = 0
        self._head_buf = bytearray()
        self._manual = manual_window_management
        self._window = (initial_window_size or 0) if manual_window_management else None
        self._read_paused = False
        self._forward = forward_proxy  # (scheme://authority, extra headers) when forwarding
        self._public_ref: weakref.ref[Any] | None = None
        # Direct sends (plain TCP only): a request without a body, activated on an idle
        # connection from another thread, is written by that thread straight to the
        # socket instead of hopping to the loop first (one thread hand-off per request
        # instead of two).  ``_idle`` says the loop has nothing in flight and nothing to
        # write; whoever clears it (under ``_idle_lock``) owns the next exchange.  The
        # socket is a duplicate of the transport's, so that it stays valid even when the
        # transport closes its own descriptor; it is closed when the connection closes.
        self._idle_lock = threading.Lock()
        self._idle = False
        self._direct: socket.socket | None = None
        self._raw_reader = False
        # Caller reads (see caller_read): while the connection is idle, or carries a
        # direct exchange, the loop may watch the socket through a private epoll set
        # (``_ep``, "ep mode", the transport paused) instead of through the transport.
        # Any thread can take the socket out of that set, which is how a thread waiting
        # for its response takes over reading without waking the loop.  All of these are
        # changed under ``_idle_lock``.
        self._ep: Any = None
        self._ep_wanted = False  # a caller tried to read: use ep mode when idle
        self._ep_misses = 0  # responses in a row that came before anyone waited for them
        self._ep_armed = False  # ep mode: the loop watches ``_ep``, the transport is paused
        self._ep_has_sock = False  # the socket is in ``_ep``
        self._caller_reading = False  # a caller thread owns reading (and parsing)
        self._caller_failed: BaseException | None = None
        self.caller_reads = 0  # exchanges completed by caller reads (tests look at it)
        self._spinner = Spinner()  # callers' spin state (see SPIN_SEC)
        self._poller: Any = None
        self._cbuf: memoryview | None = None
        self._held = False  # hold_reading(): a consumer that can't keep up pushes back
        self.activity = 0  # bumped by reads and writes: idle timeouts look at it
        if _SEND_FLAGS and not self._manual:
            self._direct = _dup_socket(self.transport)
        protocol.set_handler(self)
        if self._direct is not None:
            self._set_idle()

    # -- public side (any thread) -----------------------------------------------------
    def is_open(self) -> bool:
        return self._open

    def public_check(self) -> None:
        pass

    def new_stream(self, public: Any, request: Any, manual_write: bool) -> H1Stream:
        if not self._open:
            raise error("AWS_ERROR_HTTP_CONNECTION_CLOSED")
        if manual_write:
            raise error("AWS_ERROR_HTTP_MANUAL_WRITE_NOT_ENABLED")
        return H1Stream(self, public, request)

    def close(self) -> None:
        self._open = False
        if self.shutdown_future.done() or self.loop.is_closed():
            return
        call_on_loop(self.loop, self._close, None)

    def update_window(self, increment: int) -> None:
        if self._window is None or increment == 0:
            return
        call_on_loop(self.loop, self._grow_window, increment)

    def send_direct(self, s: H1Stream) -> bool:
        """Claim the idle connection for ``s`` and write its head from this thread.
        False (nothing done) when the loop must handle ``s`` (see ``_direct``)."""
        if not self._idle or s.request.body_stream is not None or self.loop.is_closed():
            return False
        try:
            head, _, chunked, length, expect = self._prepare_head(s)
        except BaseException:  # noqa: BLE001 - the loop fails the stream with this error
            return False
        if chunked or length or expect:
            return False
        with self._idle_lock:
            sock = self._direct
            if not self._idle or sock is None or not self._open:
                return False
            # ``_current`` first: the loop reads ``_idle`` without the lock, and once it
            # sees False it must also see the stream that owns the connection
            self._current = s
            self._idle = False
            try:
                n = sock.send(head, _SEND_FLAGS)
            except OSError:  # full (or broken): the loop writes the rest (or sees the error)
                n = 0
            s.direct = n == len(head)
        if n < len(head):
            try:
                self.loop.call_soon_threadsafe(self._write_rest, s, head[n:])
            except RuntimeError:  # the loop is gone
                self._current = None
                raise error("AWS_IO_EVENT_LOOP_SHUTDOWN") from None
        return True

    def update_connection_window(self, increment: int) -> None:
        self.update_window(increment)

    def caller_read(self, s: H1Stream, runner: Any, deadline: float | None) -> None:
        """(the thread waiting for ``s`` to complete) Read and parse the response of
        ``s`` in this thread, so that it reaches the waiter without waking the loop.

        Possible when ``s`` went out through :meth:`send_direct` and the loop watches
        the connection in ep mode: this thread takes the socket out of ``_ep`` (the loop
        no longer sees it), waits for it with ``poll()`` (spinning briefly first, see
        SPIN_SEC) and parses what it reads; the
        events go to ``runner``, which this thread drains.  Returns when ``s`` is
        complete, or earlier -- ``deadline`` passed, the server closed or failed, the
        loop dropped the connection (``_drop_direct`` wakes this thread) -- and then
        gives the socket back to the loop, which carries on with the rest."""
        if not self._ep_armed:
            if self._direct is not None and _EPOLL is not None:
                self._ep_wanted = True  # the loop switches to ep mode when next idle
            return
        if (deadline is not None and deadline <= _monotonic()) or _get_running_loop() is self.loop:
            return  # result(0): nothing to wait for; or this is the loop itself
        with self._idle_lock:
            sock = self._direct
            ep = self._ep
            if (sock is None or ep is None or not self._ep_armed or self._caller_reading
                    or self._current is not s or s.done or not self._open):
                return
            self._caller_reading = True
            if self._ep_has_sock:
                self._ep_has_sock = False
                ep.unregister(sock.fileno())
        runner.enter_reader()
        try:
            self._read_here(s, sock, ep, runner, deadline)
        finally:
            runner.leave_reader()

    def _read_here(self, s: H1Stream, sock: socket.socket, ep: Any, runner: Any,
                   deadline: float | None) -> None:
        """The body of :meth:`caller_read`, entered owning the socket."""
        lock = self._idle_lock
        poll = self._poller.poll
        buf = self._cbuf
        assert buf is not None
        owned = True  # this thread still owns reading
        rearm = True  # on giving reading back: put the socket back into the loop's watch
        then: Callable[..., None] | None = None  # run on the loop afterwards, with ``args``
        args: tuple[Any, ...] = ()
        spin = SPIN_SEC if self._spinner.wanted() else 0.0  # for the first wait only
        try:
            while True:
                runner.drain()
                if deadline is None:
                    ms = _READER_SLICE_MS
                else:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return
                    ms = min(_READER_SLICE_MS, int(remaining * 1000) + 1)
                ready = None
                if spin:
                    ready = self._spinner.spin(poll, spin)
                    spin = 0.0
                if not ready:
                    ready = poll(ms)
                with lock:
                    if self._direct is not sock:
                        owned = False  # the loop dropped the connection meanwhile
                        sock.close()
                        ep.close()
                        return
                    if not ready:
                        if self.loop.is_closed():
                            return
                        continue
                    left = self.raw_body_left
                    try:
                        if left > 0:
                            data = sock.recv(min(left, RAW_READ))
                            n = len(data)
                        else:
                            n = sock.recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        rearm = False
                        then, args = self._fail_connection, (_socket_error(exc),)
                        return
                    if not n:
                        return  # the server closed: the loop reads the end and reports it
                    if left > 0:
                        self.activity += 1
                        self.raw_body_left = left = left - n
                        self.on_body(data)
                        if not left:
                            self._parser = httptools.HttpResponseParser(self)
                            if s.got_final and not s.done:
                                self._complete_current(None)
                    else:
                        self._data_received(buf[:n])
                        failed = self._caller_failed
                        if failed is not None:
                            self._caller_failed = None
                            rearm = False
                            then, args = self._fail_connection, (failed,)
                            return
                    if s.done and self._current is None:
                        # the exchange is over: the connection goes idle again, or back
                        # to the loop when that has work for it
                        owned = False
                        self._caller_reading = False
                        self.caller_reads += 1
                        self._ep_misses = 0
                        if self._queue or self._closing or not self._open:
                            then = self._after_caller
                        else:
                            ep.register(sock.fileno(), _EPOLLIN)
                            self._ep_has_sock = True
                            self._idle = True
                        break
            runner.drain()
        finally:
            if owned:
                with lock:
                    if self._direct is not sock:  # dropped by the loop: ours to close
                        sock.close()
                        ep.close()
                    else:
                        self._caller_reading = False
                        if rearm and not self._ep_has_sock:
                            ep.register(sock.fileno(), _EPOLLIN)
                            self._ep_has_sock = True
            if then is not None:
                try:
                    self.loop.call_soon_threadsafe(then, *args)
                except RuntimeError:  # the loop is gone
                    if not s.done:
                        self._finish(s, error("AWS_IO_EVENT_LOOP_SHUTDOWN"))

    # -- exchanges driven from the loop (the S3 client) ----------------------------------
    async def exchange(self, public: Any, wire: WireRequest, *, head_method: bool = False) -> None:
        """(loop; an inline dispatcher) Send ``wire`` and receive its response: events go
        to ``public`` as for a stream (``_on_response``, ``_on_body``, ``_on_complete``).
        Returns when the response is complete and the body written; raises the error
        that ended the exchange, ``AWS_IO_SOCKET_TIMEOUT`` when nothing moved on the
        connection for ``wire.idle_timeout`` seconds."""
        done: asyncio.Future[BaseException | None] = self.loop.create_future()
        outcome = _Outcome(public, done)
        s = H1Stream(self, outcome, None)
        s.wire = wire
        s.head_method = head_method
        s.activated = True
        self._enqueue(s)
        task = s.body_task
        if task is not None:
            await asyncio.wait([task])
        while True:
            last = self.activity
            try:
                exc = await asyncio.wait_for(asyncio.shield(done), wire.idle_timeout)
                break
            except asyncio.TimeoutError:
                if done.done():
                    exc = done.result()
                    break
                if self.activity == last:
                    raise error("AWS_IO_SOCKET_TIMEOUT", "no response from the server") from None
        if exc is not None:
            raise exc

    @property
    def reusable(self) -> bool:
        """(loop) Open, idle and allowed to carry another exchange."""
        return self._open and not self._closing and self._current is None and not self._queue

    def abort(self) -> None:
        """(loop) Drop the connection at once (nothing more is written)."""
        self._open = False
        self._closing = True
        self._drop_direct()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        elif self.protocol.lost:
            self.connection_lost(None)

    # -- loop side ------------------------------------------------------------------------
    def hold_reading(self) -> None:
        """(loop) Read nothing more from the socket until :meth:`release_reading`: how a
        consumer that cannot keep up (the S3 client's file writer) pushes back on the
        sender, through TCP flow control, instead of buffering or blocking the loop."""
        if self._held:
            return
        self._held = True
        self._leave_ep()
        if self._raw_reader:
            if self._direct is not None:
                self.loop.remove_reader(self._direct.fileno())
        elif not self._read_paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def release_reading(self) -> None:
        """(loop) Undo :meth:`hold_reading`."""
        if not self._held:
            return
        self._held = False
        if self._raw_reader:
            if self._direct is not None:
                self.loop.add_reader(self._direct.fileno(), self._raw_readable)
        elif not self._read_paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _grow_window(self, increment: int) -> None:
        if self._window is None:
            return
        self._window += increment
        if self._read_paused and self._window > 0 and self.transport is not None:
            self._read_paused = False
            if not self._held:
                self.transport.resume_reading()

    def _set_idle(self) -> None:
        """(loop) Let other threads send the next request directly, if all is quiet."""
        if (self._current is None and not self._queue and self._open and not self._closing
                and self._direct is not None and not self.protocol.lost
                and self.transport is not None and not self.transport.get_write_buffer_size()):
            if self._ep_wanted and not self._ep_armed:
                self._enter_ep()
            # no lock needed to open the connection up: nobody else writes ``_idle`` while
            # it is False (the lock orders claims, see send_direct and _enqueue)
            self._idle = True

    def _enter_ep(self) -> None:
        """(loop, the connection idle) Enter ep mode: watch the socket through ``_ep``
        instead of the transport, so that a caller can take it over (caller_read)."""
        sock = self._direct
        transport = self.transport
        if (sock is None or self._held or self._read_paused or self._raw_reader or transport is None
                or transport.is_closing() or self.protocol.lost):
            return
        ep = self._ep
        if ep is None:
            try:
                ep = _EPOLL()
            except (OSError, TypeError):
                self._ep_wanted = False
                return
            self._poller = select.poll()
            self._poller.register(sock.fileno(), _POLLIN)
            self._cbuf = memoryview(bytearray(CALLER_BUFFER))
            self._ep = ep
        with self._idle_lock:
            if not self._ep_has_sock:
                ep.register(sock.fileno(), _EPOLLIN)
                self._ep_has_sock = True
            self._ep_armed = True
        transport.pause_reading()
        self.loop.add_reader(ep.fileno(), self._ep_readable)

    def _leave_ep(self, if_readable: bool = False) -> bool:
        """(loop) Leave ep mode: the transport reads again.  Not while a caller reads
        (False then, and when not in ep mode); with ``if_readable``, only if the socket
        has something to read now."""
        if not self._ep_armed:
            return False
        with self._idle_lock:
            ep = self._ep
            if self._caller_reading or not self._ep_armed:
                return False
            if if_readable and (ep is None or not self._ep_has_sock or not ep.poll(0)):
                return False  # a stale wake-up: a caller has read what woke the loop
            self._ep_armed = False
        if ep is not None:
            self.loop.remove_reader(ep.fileno())
        transport = self.transport
        if self.raw_body_left > 0 and self._direct is not None:
            # a caller gave reading back in the middle of a large body: the rest skips
            # the parser here too (see _data_received)
            self._raw_reader = True
            if not self._held:
                self.loop.add_reader(self._direct.fileno(), self._raw_readable)
        elif not self._held and not self._read_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()
        return True

    def _ep_readable(self) -> None:
        """(loop) Something arrived (or the server closed) in ep mode with no caller
        reading: the transport reads it, as without ep mode."""
        if self._leave_ep(if_readable=True) and (s := self._current) is not None and not s.waited:
            # the response came before anyone waited for it: after a few in a row (the
            # callers do not wait), ep mode only costs the loop work
            self._ep_misses += 1
            if self._ep_misses >= _EP_MAX_MISSES:
                self._ep_wanted = False

    def _after_caller(self) -> None:
        """(loop) A caller finished an exchange and left the connection to the loop."""
        self._leave_ep()
        self._after_stream()

    def _write_rest(self, s: H1Stream, rest: bytes) -> None:
        if self._current is s and self.transport is not None and not self.transport.is_closing():
            self.transport.write(rest)

    def _drop_direct(self) -> None:
        self._stop_raw_reader()
        with self._idle_lock:
            self._idle = False
            sock, self._direct = self._direct, None
            ep, self._ep = self._ep, None
            armed, self._ep_armed = self._ep_armed, False
            reader, self._caller_reading = self._caller_reading, False
            self._ep_has_sock = False
        if ep is not None and armed:
            try:
                self.loop.remove_reader(ep.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
        if reader:
            # a caller waits in poll() on the socket: wake it up; it closes both
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
        if ep is not None:
            ep.close()
        if sock is not None:
            sock.close()

    def _enqueue(self, s: H1Stream) -> None:
        if not self._open or self._closing:
            with self._idle_lock:
                self._idle = False
            self._finish(s, closed_error(self._error))
            return
        with self._idle_lock:
            self._idle = False  # no more direct sends: the loop takes over
            self._queue.append(s)
            if self._caller_reading:
                return  # the caller hands the connection over when its exchange ends
        self._leave_ep()
        if self._current is None:
            self._start_next()

    def _start_next(self) -> None:
        while self._queue and self._current is None:
            s = self._queue.popleft()
            self._current = s
            try:
                self._send_head(s)
            except BaseException as exc:  # noqa: BLE001 - bad request: fail just this stream
                self._current = None
                self._finish(s, exc)
        if self._current is None and self._direct is not None:
            self._set_idle()

    def _prepare_head(self, s: H1Stream) -> tuple[bytes, Any, bool, int | None, bool]:
        """The request head of ``s`` and how its body goes: ``(head, body, chunked,
        length, expect_100)``.  Any thread (reads only the request and fixed settings)."""
        req = s.request
        hdrs = req.headers
        # the pairs themselves (no copy): only read here
        headers: list[tuple[str, str]] = getattr(hdrs, "_pairs", None) or list(hdrs)
        body = req.body_stream
        target = req.path
        extra: list[tuple[str, str]] = []
        if self._forward is not None:
            base, proxy_headers = self._forward
            if not target.startswith(("http://", "https://")):
                target = base + (target if target.startswith("/") else "/" + target)
            extra.extend(proxy_headers)
        chunked = False
        length: int | None = None
        expect = False
        te = cl = None
        for name, value in headers:
            if len(name) in (6, 14, 17):
                key = name.lower()
                if key == "content-length":
                    cl = value
                elif key == "transfer-encoding":
                    te = value
                elif key == "expect":
                    expect = value.lower() == "100-continue"
        if te is not None:
            chunked = "chunked" in te.lower()
        if cl is not None:
            try:
                length = int(cl)
            except ValueError:
                raise error("AWS_ERROR_HTTP_INVALID_HEADER_VALUE", "bad Content-Length") from None
        elif body is not None and not chunked:
            length = known_length(body)
            if length is None:
                chunked = True
                extra.append(("Transfer-Encoding", "chunked"))
            else:
                extra.append(("Content-Length", str(length)))
        head = encode_head(req.method, target, headers, extra or None)
        return head, body, chunked, length, expect

    def _send_head(self, s: H1Stream) -> None:
        wire = s.wire
        if wire is not None:
            self.transport.write(wire.head)  # type: ignore[union-attr]
            self.activity += 1
            if wire.pieces:
                s.body_task = self.loop.create_task(self._body(s, self._send_pieces, wire))
            return
        head, body, chunked, length, expect = self._prepare_head(s)
        self.transport.write(head)  # type: ignore[union-attr]
        if body is not None and (chunked or (length or 0) > 0):
            if expect:
                s.continue_event = asyncio.Event()
            s.body_task = self.loop.create_task(self._body(s, self._send_body, body, chunked, length))
        elif chunked:
            self.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]

    async def _body(self, s: H1Stream, send: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``send(s, *args)``, which writes the body of ``s``; a failure fails the
        connection.  (The coroutine is made here, so a task cancelled before it starts
        leaves no coroutine that was never awaited.)"""
        try:
            await send(s, *args)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the body failed: the stream fails
            self._fail_connection(exc if getattr(exc, "name", None) else
                                  error("AWS_ERROR_HTTP_INVALID_BODY_STREAM", str(exc)))
        finally:
            s.body_task = None
            if s.done and self._current is None:
                self._after_stream()

    async def _send_body(self, s: H1Stream, body: Any, chunked: bool, length: int | None) -> None:
        proto = self.protocol
        transport = self.transport
        if s.continue_event is not None:
            try:
                await asyncio.wait_for(s.continue_event.wait(), CONTINUE_TIMEOUT_SEC)
            except asyncio.TimeoutError:
                pass
            if s.got_final or s.done:
                # the server answered without asking for the body: the connection's
                # framing is now unknown, so it cannot be reused
                self._closing = True
                return
        remaining = length
        size = BODY_CHUNK if remaining is None else max(1, min(BODY_CHUNK, remaining))
        buf = memoryview(bytearray(size))
        while True:
            if s.done or proto.lost:
                return
            if remaining == 0:
                break  # Content-Length bytes sent (any further stream data is ignored)
            want = buf if remaining is None else buf[:min(size, remaining)]
            n = await read_chunk(body, want)
            if n == 0:
                if remaining:
                    raise error("AWS_ERROR_HTTP_OUTGOING_STREAM_LENGTH_INCORRECT")
                break
            data = bytes(want[:n])
            if chunked:
                transport.writelines((b"%x\r\n" % n, data, b"\r\n"))  # type: ignore[union-attr]
            else:
                transport.write(data)  # type: ignore[union-attr]
                remaining = None if remaining is None else remaining - n
                if remaining == 0:
                    s.body_written = True
            if proto.write_paused:
                await proto.drain()
        if chunked:
            transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
        s.body_written = True

    async def _send_pieces(self, s: H1Stream, wire: WireRequest) -> None:
        proto = self.protocol
        transport = self.transport
        assert transport is not None and wire.pieces is not None
        sent = 0
        for piece in wire.pieces:
            view = memoryview(piece).cast("B")
            # large pieces go out in slices, each when the transport has room: the
            # kernel takes them straight from the caller's buffer, no big copy queued
            for start in range(0, len(view), WRITE_SLICE):
                if proto.write_paused:
                    await self._drain(wire.idle_timeout)
                if s.done and (s.failed or not 200 <= (s.status or 0) < 300):
                    self._closing = True  # the rest of the body is abandoned
                    return
                if proto.lost or transport.is_closing():
                    return
                chunk = view[start:start + WRITE_SLICE]
                transport.write(chunk)
                self.activity += 1
                if wire.on_sent is not None:
                    sent += len(chunk)
                    wire.on_sent(sent)
        s.body_written = True

    async def _drain(self, idle_timeout: float) -> None:
        """Wait for room in the transport; fail if nothing moves for ``idle_timeout``."""
        proto = self.protocol
        while proto.write_paused and not proto.lost:
            last = self.activity
            try:
                await asyncio.wait_for(proto.drain(), idle_timeout)
            except asyncio.TimeoutError:
                if self.activity == last:
                    raise error("AWS_IO_SOCKET_TIMEOUT", "the server stopped reading") from None

    # -- parser callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._raw_length = None
        self._body_seen = 0
        s = self._current
        if s is not None:
            s._raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        s = self._current
        if s is not None:
            s._raw_headers.append((name, value))  # decoded only if on_response wants them

    def on_headers_complete(self) -> None:
        s = self._current
        if s is None:
            raise error("AWS_ERROR_HTTP_PROTOCOL_ERROR", "response without a request")
        status = self._parser.get_status_code()
        raw = s._raw_headers
        if 100 <= status < 200:
            if status == 100:
                s.saw_100 = True
                if s.continue_event is not None:
                    s.continue_event.set()
            if status == 101:
                raise error("AWS_ERROR_HTTP_SWITCHED_PROTOCOLS")
            return
        s.got_final = True
        s.status = status
        if s.continue_event is not None:
            s.continue_event.set()
        length: bytes | None = None
        te = b""
        for n, v in raw:
            size = len(n)
            if size == 14:
                if length is None and n.lower() == b"content-length":
                    length = v
            elif size == 17 and n.lower() == b"transfer-encoding":
                te = te + b"," + v if te else v
        chunked = b"chunked" in te.lower()
        no_body = s.head_method or status in _NO_BODY_STATUS
        s.until_eof = length is None and not chunked and not no_body
        if not self._parser.should_keep_alive():
            self._closing = True
        if length is not None and not chunked and not no_body and len(length) > 5 and \
                length.isdigit() and int(length) >= RAW_BODY_MIN:
            self._raw_length = int(length)
        s.public._response_status_code = status
        if s.public._on_response_cb is not None:
            self.dispatch.post(s.public._on_response, status, _decode(raw))

    def on_body(self, body: Any) -> None:
        s = self._current
        if s is None:
            return
        self._body_seen += len(body)
        if self._window is not None:
            self._window -= len(body)
            if self._window <= 0 and not self._read_paused and self.transport is not None:
                self._read_paused = True
                self.transport.pause_reading()
        if s.public._on_body_cb is not None:
            self.dispatch.post(s.public._on_body, body)

    def on_message_complete(self) -> None:
        s = self._current
        if s is None or not s.got_final:
            return  # an informational response ended
        self._complete_current(None)

    # -- handler interface for ConnProtocol -------------------------------------------------
    def data_received(self, data: memoryview) -> None:
        dispatch = self.dispatch
        dispatch.hold()
        try:
            self._data_received(data)
        finally:
            dispatch.release()

    def _data_received(self, data: memoryview) -> None:
        self.activity += 1
        s = self._current
        if s is not None and s.head_method and not s.got_final:
            self._head_buf += data
            end = self._head_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head_buf[:end + 4])
            rest = bytes(self._head_buf[end + 4:])
            self._head_buf = bytearray()
            try:
                self._parser.feed_data(head)
            except BaseException as exc:  # noqa: BLE001
                self._parse_failed(exc)
                return
            if s.got_final and not s.done:
                self._complete_current(None)
            self._parser = httptools.HttpResponseParser(self)
            if rest:
                self._data_received(memoryview(rest))
            return
        try:
            self._parser.feed_data(data)
        except BaseException as exc:  # noqa: BLE001
            self._parse_failed(exc)
            return
        length = self._raw_length
        if length is not None and self._current is not None and not self._current.done:
            self._raw_length = None
            left = length - self._body_seen
            if left >= RAW_BODY_MIN // 2 and self._window is None:
                self.raw_body_left = left
                if self._caller_reading:
                    return  # the reading caller reads the rest itself (see caller_read)
                if self.raw_reads and self._direct is not None and self.transport is not None:
                    # plain TCP: read the body ourselves, each recv() straight into the
                    # bytes object handed to on_body (one copy, not two), and a whole
                    # burst of reads per wake-up of the callback thread
                    self.transport.pause_reading()
                    self.loop.add_reader(self._direct.fileno(), self._raw_readable)
                    self._raw_reader = True
                else:
                    self.protocol.enter_raw()

    def _raw_readable(self) -> None:
        sock = self._direct
        if sock is None:
            return
        left = self.raw_body_left
        got = 0
        dispatch = self.dispatch
        dispatch.hold()
        try:
            pool = self.raw_pool
            while left > 0 and got < self.raw_burst and not self._held:
                buf = None if pool is None else pool.take()
                try:
                    if buf is None:
                        data: Any = sock.recv(min(left, RAW_READ))
                        n = len(data)
                    else:
                        n = sock.recv_into(buf, min(left, len(buf)))
                        data = memoryview(buf)[:n]
                except (BlockingIOError, InterruptedError):
                    if buf is not None:
                        pool.give(buf)
                    return
                except OSError as exc:
                    self._stop_raw_reader()
                    self._fail_connection(_socket_error(exc))
                    return
                if not n:
                    # the peer closed mid-body: the transport reads the end and reports it
                    if buf is not None:
                        data.release()
                        pool.give(buf)
                    self._stop_raw_reader()
                    return
                left -= n
                got += n
                self.activity += 1
                self.raw_body_left = left
                self.on_body(data)
            if left > 0:
                return
            self._stop_raw_reader()
            self._raw_finished(b"")
        finally:
            dispatch.release()

    def _stop_raw_reader(self) -> None:
        """(loop) Give reading back to the transport."""
        if not self._raw_reader:
            return
        self._raw_reader = False
        if self._direct is not None:
            self.loop.remove_reader(self._direct.fileno())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def raw_data(self, data: bytes) -> None:
        """Bytes that arrived while the rest of a large body streams (see enter_raw)."""
        left = self.raw_body_left
        if left <= 0:  # not in raw mode any more (a late read): parse it
            self.data_received(memoryview(data))
            return
        n = len(data)
        self.activity += 1
        if n <= left:
            self.raw_body_left = left - n
            self.on_body(data)
            if self.raw_body_left:
                return
            rest = b""
        else:
            self.raw_body_left = 0
            self.on_body(data[:left])
            rest = data[left:]
        self.protocol.leave_raw()
        self._raw_finished(rest)

    def _raw_finished(self, rest: bytes) -> None:
        # the body is complete: back to parsing, with a parser for the next message
        self._parser = httptools.HttpResponseParser(self)
        s = self._current
        if s is not None and s.got_final and not s.done:
            self._complete_current(None)
        if rest and self._open:
            self.data_received(memoryview(rest))

    def _parse_failed(self, exc: BaseException) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):
            exc = error("AWS_ERROR_HTTP_SWITCHED_PROTOCOLS")
        elif not getattr(exc, "name", None):
            cause = getattr(exc, "__context__", None)
            if cause is not None and getattr(cause, "name", None):
                exc = cause
            else:
                exc = error("AWS_ERROR_HTTP_PROTOCOL_ERROR", f"malformed HTTP response: {exc}")
        if self._caller_reading:
            self._caller_failed = exc  # the reading caller hands it to the loop
            return
        self._fail_connection(exc)

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self._open = False
        self._drop_direct()
        s = self._current
        if s is not None and not s.done and s.got_final and s.until_eof:
            self._complete_current(None)
        if self._error is None and not self._closing:
            # the peer (or the network) closed the connection under us
            self._error = error("AWS_IO_SOCKET_CLOSED", "the server closed the connection")
        s, self._current = self._current, None
        if s is not None:
            if s.body_task is not None:
                s.body_task.cancel()
            self._finish(s, self._error or closed_error(None))
        self._fail_all(closed_error(None))
        detach, self.before_shutdown = self.before_shutdown, None
        if detach is not None:
            detach()
        if self._error is None:
            self.shutdown_future.try_set_result(None)
        else:
            self.shutdown_future.try_set_exception(self._error)

    # -- completion -------------------------------------------------------------------------
    def _complete_current(self, exc: BaseException | None) -> None:
        s = self._current
        if s is None:
            return
        self._current = None
        if s.wire is None and s.body_task is None and not self._queue and not self._caller_reading:
            # the connection goes idle (or closes) first, so that a thread that this
            # completion wakes (a stream without callbacks completes right here) can
            # send its next request directly
            self._after_stream()
            self._finish(s, exc)
            return
        self._finish(s, exc)
        if self._caller_reading:
            return  # the reading caller hands the connection on (see caller_read)
        if s.body_task is not None and not s.body_task.done():
            if exc is None and (s.body_written or (s.continue_event is not None and not s.saw_100)
                                or (s.wire is not None and s.wire.finish_after_success
                                    and 200 <= (s.status or 0) < 300)):
                pass  # the body task is about to end (or sees got_final and stops, or
                # finishes a body the server answered early)
            else:
                self._closing = True
                s.body_task.cancel()
            return
        self._after_stream()

    def _after_stream(self) -> None:
        if self._current is not None:
            return
        if self._closing:
            self._close(None)
            return
        self._start_next()

    def _finish(self, s: H1Stream, exc: BaseException | None) -> None:
        if s.done:
            return
        s.done = True
        s.failed = exc is not None
        public = s.public
        if exc is None and s.has_cbs:
            self.dispatch.post(public._on_complete, None)
        elif exc is None:
            public._on_complete(None)
        else:
            self.dispatch.post(public._on_complete, exc)

    def _fail_all(self, exc: BaseException) -> None:
        s, self._current = self._current, None
        if s is not None:
            if s.body_task is not None:
                s.body_task.cancel()
            self._finish(s, exc)
        while self._queue:
            self._finish(self._queue.popleft(), exc)

    def _fail_connection(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._open = False
        self._drop_direct()
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.close()

    def _close(self, exc: BaseException | None) -> None:
        self._open = False
        self._closing = True
        self._drop_direct()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        elif self.protocol.lost:
            self.connection_lost(None)


def _socket_error(exc: OSError) -> BaseException:
    """The crtpy error for a failed read from the socket."""
    name = _net_errors._ERRNO_NAMES.get(exc.errno or 0)
    return error(name, str(exc)) if name else error("AWS_IO_SOCKET_CLOSED", str(exc))


def _dup_socket(transport: Any) -> socket.socket | None:
    """A duplicate of a plain TCP transport's socket (None under TLS or without one)."""
    if transport is None or transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    try:
        fd = os.dup(sock.fileno())
    except (OSError, ValueError):
        return None
    return socket.socket(sock.family, socket.SOCK_STREAM, 0, fd)

