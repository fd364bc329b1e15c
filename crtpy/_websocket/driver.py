"""Runs a :class:`~crtpy._websocket.core.ClientProtocol` over a network connection.

One :class:`Connection` lives on one loop thread (picked from the bootstrap's event-loop
group).  Its protocol state is touched only there; the public methods (``send_frame``,
``close``, ``increment_read_window``) hop onto the loop with ``call_soon_threadsafe``.
Events go to a :class:`CallbackSink` through the connection's own
:class:`~crtpy._runtime.callbacks.CallbackQueue`, so user callbacks run in order, one at a
time, never on the loop thread.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .. import NativeResource
from .._runtime.callbacks import CallbackQueue
from . import core as _core
from .frames import Buffer
from .handshake import HandshakeError, ResponseParser, check_upgrade

_log = logging.getLogger("crtpy.websocket")

HANDSHAKE_TIMEOUT_SEC = 30.0
# After both CLOSE frames have been exchanged the server should close the TCP connection;
# if it does not within this time we close it ourselves.
CLOSE_GRACE_SEC = 1.0
# Without a managed read window, stop reading from the socket while this many payload bytes
# wait in the callback queue (user callbacks run on other threads and could fall behind).
MAX_UNDELIVERED_BYTES = 8 * 1024 * 1024


class CallbackSink(Protocol):
    """What the public module gives the driver; every method runs on a callback worker."""

    def setup(self, error: BaseException | None, connection: Connection | None,
              status: int | None, headers: list[tuple[str, str]] | None,
              body: bytes | None) -> None: ...

    def shutdown(self, error_name: str | None) -> None: ...

    def frame_begin(self, opcode: int, payload_length: int, fin: bool) -> None: ...

    def frame_payload(self, data: bytes) -> None: ...

    def frame_complete(self, error_name: str | None) -> None: ...

    def send_complete(self, on_complete: Callable[..., Any], error_name: str | None) -> None: ...


class _Proto(asyncio.Protocol):
    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn._connection_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._conn._data_received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._connection_lost(exc)

    def pause_writing(self) -> None:
        self._conn._write_paused = True

    def resume_writing(self) -> None:
        self._conn._write_paused = False
        self._conn._check_flushed()


class Connection(NativeResource):
    """One client WebSocket connection (handshake, then frames)."""

    def __init__(self, loop_thread: Any, sink: CallbackSink, *, manage_read_window: bool,
                 initial_read_window: int) -> None:
        super().__init__()
        self._lt = loop_thread
        self._loop: asyncio.AbstractEventLoop = loop_thread.loop
        self._sink = sink
        self._queue = CallbackQueue()
        # send_frame completions have their own queue, so that a frame callback may block
        # waiting for one without deadlocking; shutdown hops through it (see _post_shutdown)
        # so that every completion is reported before on_connection_shutdown.
        self._send_queue = CallbackQueue()
        self._manage_window = manage_read_window
        self._initial_window = initial_read_window
        # loop-thread state
        self._state = "connecting"  # -> handshake -> open -> closed
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._key: str | None = None
        self._protocols: list[str] = []
        self._request_bytes = b""
        self._core: _core.ClientProtocol | None = None
        self._shutdown_error: str | None = None
        self._local_close = False
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True
        self._write_paused = False
        self._written = 0
        self._pending_sends: collections.deque[tuple[int, Callable[..., Any] | None]] = collections.deque()
        self._flush_poll: asyncio.TimerHandle | None = None
        # shared with other threads
        self._lock = threading.Lock()
        self._close_sent_flag = False  # a CLOSE was handed to send_frame / close()
        self._undelivered = 0
        self._blocked_on_callbacks = False
        self._finished = False  # the connection ended; nothing more to do on the loop

    # ------------------------------------------------------------------ connecting -------
    def start(self, host: str, port: int, request_bytes: bytes, key: str | None, *,
              bootstrap: Any, socket_options: Any, tls_connection_options: Any,
              proxy_options: Any = None, protocols: list[str] | None = None) -> None:
        self._request_bytes = request_bytes
        self._key = key
        self._protocols = protocols or []
        self._lt.run_coroutine(self._connect(host, port, bootstrap, socket_options,
                                             tls_connection_options, proxy_options))

    async def _connect(self, host: str, port: int, bootstrap: Any, socket_options: Any,
                       tls_connection_options: Any, proxy_options: Any) -> None:
        from .._net.connect import map_connect_error, open_connection

        try:
            if proxy_options is not None:
                # An upgrade cannot be forwarded by a plain HTTP proxy: always tunnel.
                from .._http.proxy import open_tunnel

                await open_tunnel(host, port, proxy_options, protocol_factory=lambda: _Proto(self),
                                  bootstrap=bootstrap, socket_options=socket_options,
                                  tls_connection_options=tls_connection_options)
            else:
                await open_connection(host, port, protocol_factory=lambda: _Proto(self),
                                      bootstrap=bootstrap, socket_options=socket_options,
                                      tls_connection_options=tls_connection_options)
        except BaseException as exc:  # noqa: BLE001 - reported through the setup callback
            if isinstance(exc, asyncio.CancelledError):
                from .._errors import error

                exc = error("AWS_IO_EVENT_LOOP_SHUTDOWN")
            elif not hasattr(exc, "name"):
                exc = map_connect_error(exc)
            self._state = "closed"
            self._finished = True
            self._queue.post(self._sink.setup, exc.with_traceback(None), None, None, None, None)

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._state = "handshake"
        try:
            transport.set_write_buffer_limits(high=0, low=0)
        except (AttributeError, NotImplementedError):  # pragma: no cover
            pass
        transport.write(self._request_bytes)
        self._request_bytes = b""
        self._timer = self._loop.call_later(HANDSHAKE_TIMEOUT_SEC, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        if self._state == "handshake":
            self._fail_setup("AWS_IO_SOCKET_TIMEOUT", "no handshake response in time", None, None, None)

    def _fail_setup(self, name: str, detail: str, status: int | None,
                    headers: list[tuple[str, str]] | None, body: bytes | None) -> None:
        from .._errors import error

        self._state = "closed"
        self._finished = True
        self._cancel_timer()
        self._queue.post(self._sink.setup, error(name, detail), None, status, headers, body)
        if self._transport is not None:
            self._transport.abort()

    def _handshake_data(self, data: bytes) -> None:
        parser = self._parser
        try:
            parser.feed(data)
        except HandshakeError as e:
            self._fail_setup(e.name, e.detail, parser.status, parser.headers or None, None)
            return
        if not parser.done:
            return
        status, headers = parser.status, parser.headers
        assert status is not None
        try:
            check_upgrade(status, headers, self._key, self._protocols)
        except HandshakeError as e:
            self._fail_setup(e.name, e.detail, status, headers,
                             parser.body if status != 101 else None)
            return
        self._cancel_timer()
        self._state = "open"
        self._core = _core.ClientProtocol(manage_read_window=self._manage_window,
                                          initial_read_window=self._initial_window)
        self._queue.post(self._sink.setup, None, self, status, headers, None)
        leftover, parser.leftover = parser.leftover, b""
        self._parser = None  # type: ignore[assignment]
        if leftover:
            self._core.receive_data(leftover)
            self._process()

    # ------------------------------------------------------------------ reading ----------
    def _data_received(self, data: bytes) -> None:
        try:
            if self._state == "open":
                core = self._core
                assert core is not None
                core.receive_data(data)
                self._process()
            elif self._state == "handshake":
                self._handshake_data(data)
        except Exception:  # noqa: BLE001 - a crtpy bug must end the connection, not hang it
            _log.exception("internal error in the WebSocket connection; closing it")
            if self._state == "handshake":
                self._fail_setup("AWS_ERROR_UNKNOWN", "internal error", None, None, None)
            else:
                self._shutdown("AWS_ERROR_UNKNOWN")

    def _process(self) -> None:
        core = self._core
        if core is None or self._state != "open":
            return
        events = core.events()
        post = self._queue.post
        sink = self._sink
        payload_bytes = 0
        failure: str | None = None
        close_received = False
        for ev in events:
            t = type(ev)
            if t is _core.FramePayload:
                n = len(ev.data)  # type: ignore[union-attr]
                payload_bytes += n
                post(self._deliver_payload, ev.data, n)  # type: ignore[union-attr]
            elif t is _core.FrameBegin:
                post(sink.frame_begin, ev.opcode, ev.payload_length, ev.fin)  # type: ignore[union-attr]
            elif t is _core.FrameComplete:
                post(sink.frame_complete, ev.error)  # type: ignore[union-attr]
            elif t is _core.ProtocolFailure:
                failure = ev.error  # type: ignore[union-attr]
                _log.debug("websocket protocol error: %s", ev.detail)  # type: ignore[union-attr]
            elif t is _core.CloseReceived:
                close_received = True
        if payload_bytes:
            with self._lock:
                self._undelivered += payload_bytes
        self._write_chunks(core.data_to_send())
        if failure is not None:
            self._shutdown(failure)
            return
        if close_received:
            with self._lock:
                self._close_sent_flag = True  # our CLOSE reply went out
        if close_received and self._timer is None:
            self._timer = self._loop.call_later(CLOSE_GRACE_SEC, self._close_grace_expired)
        self._update_reading()

    def _deliver_payload(self, data: bytes, n: int) -> None:
        # runs on a callback worker
        try:
            self._sink.frame_payload(data)
        finally:
            with self._lock:
                self._undelivered -= n
                resume = self._blocked_on_callbacks and self._undelivered <= MAX_UNDELIVERED_BYTES // 2
                if resume:
                    self._blocked_on_callbacks = False
            if resume:
                try:
                    self._loop.call_soon_threadsafe(self._update_reading)
                except RuntimeError:
                    pass  # loop closed

    def _update_reading(self) -> None:
        transport = self._transport
        core = self._core
        if transport is None or core is None or self._state != "open":
            return
        with self._lock:
            backlog = self._undelivered > MAX_UNDELIVERED_BYTES
            if backlog:
                self._blocked_on_callbacks = True
        want = core.wants_data() and not backlog
        if want and not self._reading:
            self._reading = True
            transport.resume_reading()
        elif not want and self._reading:
            self._reading = False
            transport.pause_reading()

    def _close_grace_expired(self) -> None:
        self._timer = None
        if self._state == "open" and self._transport is not None:
            self._transport.close()

    def _connection_lost(self, exc: BaseException | None) -> None:
        state = self._state
        self._state = "closed"
        self._finished = True
        self._cancel_timer()
        if state == "handshake":
            try:
                self._parser.feed_eof()
            except HandshakeError as e:
                self._fail_setup(e.name, e.detail, None, None, None)
            else:
                status, headers = self._parser.status, self._parser.headers
                self._fail_setup("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                                 "connection closed during the handshake", status, headers,
                                 self._parser.body)
            self._transport = None
            return
        if state in ("connecting", "closed"):
            self._transport = None
            return  # setup already reported the failure
        if self._core is not None:
            for ev in self._core.receive_eof():
                if type(ev) is _core.FrameComplete:
                    self._queue.post(self._sink.frame_complete, ev.error)
        self._fail_pending_sends("AWS_ERROR_HTTP_CONNECTION_CLOSED")
        if state == "open":
            # the peer (or the network) ended the connection
            name = self._shutdown_error or "AWS_IO_SOCKET_CLOSED"
            self._post_shutdown(name)
        else:  # "closing": we ended it
            self._post_shutdown(self._shutdown_error)
        self._transport = None
        self._core = None

    def _post_shutdown(self, name: str | None) -> None:
        queue, sink = self._queue, self._sink
        self._send_queue.post(queue.post, sink.shutdown, name)

    def _shutdown(self, error_name: str | None) -> None:
        """End the connection from our side (local close or error): send CLOSE, close."""
        if self._state != "open":
            return
        self._state = "closing"
        self._shutdown_error = error_name
        self._cancel_timer()
        core = self._core
        if core is not None:
            self._write_chunks(core.close_frame())
        if self._transport is not None:
            if not self._reading:
                self._transport.resume_reading()
            self._transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ writing ----------
    def _write_chunks(self, chunks: list[Buffer]) -> None:
        transport = self._transport
        if not chunks or transport is None or transport.is_closing():
            return
        for c in chunks:
            transport.write(c)
            self._written += len(c)

    def _check_flushed(self) -> None:
        pending = self._pending_sends
        if not pending:
            return
        transport = self._transport
        if transport is None:
            return
        flushed = self._written - transport.get_write_buffer_size()
        while pending and pending[0][0] <= flushed:
            _, cb = pending.popleft()
            if cb is not None:
                self._send_queue.post(self._sink.send_complete, cb, None)
        if pending and not self._write_paused and self._flush_poll is None:
            # Flow control did not pause us, so no resume_writing() will come: look again soon.
            self._flush_poll = self._loop.call_later(0.005, self._flush_poll_fired)

    def _flush_poll_fired(self) -> None:
        self._flush_poll = None
        self._check_flushed()

    def _fail_pending_sends(self, name: str) -> None:
        pending, self._pending_sends = self._pending_sends, collections.deque()
        for _, cb in pending:
            if cb is not None:
                self._send_queue.post(self._sink.send_complete, cb, name)
        if self._flush_poll is not None:
            self._flush_poll.cancel()
            self._flush_poll = None

    # ------------------------------------------------------------------ public API -------
    def send_frame(self, opcode: int, fin: bool, chunks: list[Buffer],
                   on_complete: Callable[..., Any] | None) -> None:
        """Queue an encoded frame (any thread)."""
        with self._lock:
            if self._close_sent_flag:
                from .._errors import error

                raise error("AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT",
                            "a CLOSE frame was already sent; no more frames may be sent")
            if opcode == _core.CLOSE_OPCODE:
                self._close_sent_flag = True
        try:
            self._loop.call_soon_threadsafe(self._send_on_loop, opcode, fin, chunks, on_complete)
        except RuntimeError:  # the loop is gone
            if on_complete is not None:
                self._send_queue.post(self._sink.send_complete, on_complete, "AWS_ERROR_HTTP_CONNECTION_CLOSED")

    def _send_on_loop(self, opcode: int, fin: bool, chunks: list[Buffer],
                      on_complete: Callable[..., Any] | None) -> None:
        core = self._core
        if self._state != "open" or core is None:
            if on_complete is not None:
                self._send_queue.post(self._sink.send_complete, on_complete, "AWS_ERROR_HTTP_CONNECTION_CLOSED")
            return
        try:
            core.check_send(opcode, fin)
        except _core.SendError as e:
            if on_complete is not None:
                self._send_queue.post(self._sink.send_complete, on_complete, e.name)
            if e.fatal:
                self._shutdown(e.name)
            return
        self._write_chunks(chunks)
        self._pending_sends.append((self._written, on_complete))
        self._check_flushed()

    def close(self) -> None:
        """Start shutting down (any thread, idempotent)."""
        with self._lock:
            self._close_sent_flag = True
        if self._finished:
            return
        try:
            self._loop.call_soon_threadsafe(self._close_on_loop)
        except RuntimeError:
            pass  # the loop is gone, and the connection with it

    def _close_on_loop(self) -> None:
        if self._state == "open":
            self._local_close = True
            self._shutdown(None)
        elif self._state in ("handshake", "connecting") and self._transport is not None:
            self._fail_setup("AWS_ERROR_HTTP_CONNECTION_CLOSED", "closed during the handshake",
                             None, None, None)

    def increment_read_window(self, size: int) -> None:
        if not self._manage_window or size == 0 or self._finished:
            return
        try:
            self._loop.call_soon_threadsafe(self._increment_on_loop, size)
        except RuntimeError:
            pass

    def _increment_on_loop(self, size: int) -> None:
        core = self._core
        if core is None or self._state != "open":
            return
        core.increment_read_window(size)
        self._process()
