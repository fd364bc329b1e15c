"""HTTP/2 client engine on the ``h2`` state machine (sans-I/O: bytes in, events out).

Runs on the connection's event loop; the public objects' calls hop onto it.  Stream
events reach the public streams through the connection's Dispatcher, in order.
"""
from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack

from .._errors import error
from .._runtime.futures import CrtFuture
from .common import BODY_CHUNK, Dispatcher, call_on_loop, closed_error, helping_future, read_chunk
from .transport import ConnProtocol

_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                          "upgrade", "host"})
_AUTO_CONN_WINDOW = 16 * 1024 * 1024
_DEFAULT_STREAM_WINDOW = 8 * 1024 * 1024


def _install_huffman_cache() -> None:
    """Memoize HPACK Huffman decoding (a pure function, and by far the costliest step of
    reading a response's headers in pure Python): servers repeat the same header values
    (server, date, content-type, ...) response after response."""
    import hpack.hpack as _hp

    # hpack.hpack uses the name without re-exporting it, hence getattr/setattr.
    plain: Callable[[bytes], bytes] = getattr(_hp, "decode_huffman")  # noqa: B009
    if getattr(plain, "_crtpy_cached", False):
        return
    cache: dict[bytes, bytes] = {}

    def decode_huffman(data: bytes) -> bytes:
        key = bytes(data)
        out = cache.get(key)
        if out is None:
            out = plain(key)
            if len(key) <= 512:
                if len(cache) >= 4096:
                    cache.clear()
                cache[key] = out
        return out

    decode_huffman._crtpy_cached = True  # type: ignore[attr-defined]
    setattr(_hp, "decode_huffman", decode_huffman)  # noqa: B010


_install_huffman_cache()


def _table_state(table: Any) -> tuple[int, Any, int, bool]:
    entries = table.dynamic_entries
    return (len(entries), entries[0] if entries else None, table.maxsize, table.resized)


class _CachingDecoder(hpack.Decoder):
    """HPACK decoder that remembers header blocks which neither use nor change the
    dynamic table state they were decoded in: servers send the same block response
    after response, and pure-Python HPACK decoding is the costliest part of a small
    response.  The cache is emptied whenever a block changes the table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[tuple[bool, bytes], tuple[Any, ...]] = {}

    def decode(self, data: Any, raw: bool = False) -> Any:
        key = (raw, bytes(data))
        hit = self._cache.get(key)
        if hit is not None:
            return list(hit)
        before = _table_state(self.header_table)
        result = super().decode(data, raw)
        if _table_state(self.header_table) == before:
            if len(self._cache) >= 1024:
                self._cache.clear()
            self._cache[key] = tuple(result)
        else:
            self._cache.clear()
        return result


class _CachingEncoder(hpack.Encoder):
    """HPACK encoder that reuses the block of a header list it encoded before, when that
    encoding left the dynamic table unchanged (repeated requests)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[Any, bool], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        try:
            key = (tuple(headers), huffman)
            hit = self._cache.get(key)
        except TypeError:  # unhashable header values
            return super().encode(headers, huffman)
        if hit is not None and not self.header_table.resized:
            return hit
        before = _table_state(self.header_table)
        out = super().encode(headers, huffman)
        if _table_state(self.header_table) == before:
            if len(self._cache) >= 256:
                self._cache.clear()
            self._cache[key] = out
        else:
            self._cache.clear()
        return out


class _H2StateMachine(h2.connection.H2Connection):
    """h2's connection with a constant-time count of open client streams.

    h2 counts open streams by walking all of them on every new stream (quadratic with
    many concurrent streams).  The engine keeps its own count and already holds streams
    back at the server's MAX_CONCURRENT_STREAMS; h2's own walk (which also forgets
    closed streams) runs only every so often."""

    _count_open: Callable[[], int] = staticmethod(lambda: 0)
    _calls = 0

    @property
    def open_outbound_streams(self) -> int:
        self._calls += 1
        if self._calls % 256 == 0:
            return super().open_outbound_streams
        return self._count_open()


class H2Stream:
    __slots__ = (
        "_pending_error",
        "activated",
        "conn",
        "done",
        "has_cbs",
        "local_closed",
        "manual_write",
        "public",
        "remote_closed",
        "request",
        "stream_id",
        "unacked",
        "window_event",
        "write_task",
        "writes",
    )

    def __init__(self, conn: H2Connection, public: Any, request: Any, manual_write: bool) -> None:
        self.conn = conn
        self.public = public
        self.request = request
        self.manual_write = manual_write
        self.stream_id: int | None = None
        self.activated = False
        self.done = False
        self.local_closed = False
        self.remote_closed = False
        # manual writes: (body stream or None, end_stream, future)
        self.writes: collections.deque[tuple[Any, bool, CrtFuture]] = collections.deque()
        self.write_task: asyncio.Task[None] | None = None
        self.window_event: asyncio.Event | None = None
        self.has_cbs = public._on_response_cb is not None or public._on_body_cb is not None
        self.unacked = 0

    def make_future(self) -> CrtFuture:
        return helping_future(self.conn.dispatch)

    # -- any thread -------------------------------------------------------------------
    def activate(self) -> None:
        if self.activated:
            return
        if not self.conn._open:
            raise error("AWS_ERROR_HTTP_CONNECTION_CLOSED")
        self.activated = True
        self.conn._post_activation(self)

    def update_window(self, increment: int) -> None:
        if increment:
            call_on_loop(self.conn.loop, self.conn._grow_stream_window, self, increment)

    def write_data(self, body: Any, end_stream: bool) -> CrtFuture:
        fut = CrtFuture()
        if not self.manual_write:
            fut.set_exception(error("AWS_ERROR_HTTP_MANUAL_WRITE_NOT_ENABLED"))
            return fut
        call_on_loop(self.conn.loop, self.conn._queue_write, self, body, end_stream, fut)
        return fut


class H2Connection:
    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: ConnProtocol, *,
                 shutdown_future: CrtFuture, dispatcher: Dispatcher, authority: str, scheme: str,
                 manual_window_management: bool = False, initial_window_size: int | None = None,
                 initial_settings: list[Any] | None = None,
                 on_remote_settings_changed: Callable[[list[Any]], None] | None = None,
                 conn_manual_window_management: bool = False,
                 conn_window_size_threshold: int | None = None,
                 stream_window_size_threshold: int | None = None,
                 read_buffer_capacity: int | None = None) -> None:
        self.loop = loop
        self.protocol = protocol
        self.transport = protocol.transport
        self.shutdown_future = shutdown_future
        self.dispatch = dispatcher
        self.before_shutdown: Callable[[], Any] | None = None
        self.authority = authority
        self.scheme = scheme
        self._manual_stream = manual_window_management
        self._manual_conn = conn_manual_window_management
        self._conn_threshold = conn_window_size_threshold
        self._stream_threshold = stream_window_size_threshold
        self._conn_unacked = 0
        self._user_settings_cb = on_remote_settings_changed
        self._open = True
        self._goaway = False
        self._error: BaseException | None = None
        self._streams: dict[int, H2Stream] = {}
        self._waiting: collections.deque[H2Stream] = collections.deque()
        self._conn_window_event = asyncio.Event()
        self._pings: collections.deque[asyncio.Future[None]] = collections.deque()
        self._act_lock = threading.Lock()
        self._act_queue: list[H2Stream] = []
        self._act_scheduled = False
        self._batching = False
        self._settings_seen = False

        values: dict[int, int] = {
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _DEFAULT_STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        }
        if manual_window_management or initial_window_size is not None:
            values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = int(initial_window_size or 0)
        for s in initial_settings or []:
            values[int(s.id)] = int(s.value)
        # the engine builds request headers itself (lower-case names, pseudo-headers
        # first): h2's outbound validation would only repeat that work per request
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.h2 = _H2StateMachine(config=cfg)
        encoder, decoder = _CachingEncoder(), _CachingDecoder()
        decoder.max_header_list_size = self.h2.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.h2.decoder.max_allowed_table_size
        self.h2.encoder, self.h2.decoder = encoder, decoder
        self.h2._count_open = lambda: len(self._streams)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values=values)  # type: ignore[arg-type]
        self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        protocol.set_handler(None)

    async def start(self) -> None:
        self.h2.initiate_connection()
        if not self._manual_conn:
            self.h2.increment_flow_control_window(_AUTO_CONN_WINDOW)
        self._flush()
        self.protocol.set_handler(self)

    # -- public side (any thread) -------------------------------------------------------------
    def is_open(self) -> bool:
        return self._open and not self._goaway

    def new_stream(self, public: Any, request: Any, manual_write: bool) -> H2Stream:
        if not self.is_open():
            raise error("AWS_ERROR_HTTP_CONNECTION_CLOSED")
        return H2Stream(self, public, request, manual_write)

    def close(self) -> None:
        self._open = False
        if self.shutdown_future.done() or self.loop.is_closed():
            return
        call_on_loop(self.loop, self._close)

    def update_connection_window(self, increment: int) -> None:
        if increment:
            call_on_loop(self.loop, self._grow_conn_window, increment)

    def update_window(self, increment: int) -> None:
        self.update_connection_window(increment)

    def ping(self, data: bytes = b"\0" * 8) -> asyncio.Future[None]:
        """Loop side: send a PING; the future completes on its ACK."""
        fut = self.loop.create_future()
        self._pings.append(fut)
        self.h2.ping(data)
        self._flush()
        return fut

    def _post_activation(self, s: H2Stream) -> None:
        """Any thread: queue a stream for activation; one loop wake-up (and one write)
        serves all the streams activated meanwhile."""
        with self._act_lock:
            self._act_queue.append(s)
            if self._act_scheduled:
                return
            self._act_scheduled = True
        call_on_loop(self.loop, self._run_activations)

    def _run_activations(self) -> None:
        with self._act_lock:
            batch, self._act_queue = self._act_queue, []
            self._act_scheduled = False
        self._batching = True
        try:
            for s in batch:
                self._activate(s)
        finally:
            self._batching = False
        self._flush()

    # -- loop side --------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._batching:
            return
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _grow_conn_window(self, increment: int) -> None:
        if self._open:
            try:
                self.h2.increment_flow_control_window(increment)
            except (h2.exceptions.FlowControlError, ValueError) as exc:
                self._fail_connection(error("AWS_ERROR_HTTP_PROTOCOL_ERROR", str(exc)))
                return
            self._flush()

    def _grow_stream_window(self, s: H2Stream, increment: int) -> None:
        if s.done or s.stream_id is None or s.remote_closed or not self._open:
            return
        try:
            self.h2.increment_flow_control_window(increment, s.stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError, ValueError):
            return
        self._flush()

    def _headers_for(self, request: Any) -> list[tuple[bytes, bytes]]:
        pseudo: dict[str, str] = {}
        regular: list[tuple[bytes, bytes]] = []
        host = None
        for name, value in request.headers:
            lname = name.lower()
            if lname.startswith(":"):
                pseudo[lname] = value
            elif lname == "host":
                host = value
            elif lname in _HOP_HEADERS or lname == "te" and value.lower() != "trailers":
                continue
            else:
                regular.append((lname.encode("latin-1"), value.encode("latin-1")))
        out = [
            (b":method", pseudo.get(":method", request.method).encode("latin-1")),
            (b":scheme", pseudo.get(":scheme", self.scheme).encode("latin-1")),
            (b":authority", pseudo.get(":authority", host or self.authority).encode("latin-1")),
            (b":path", pseudo.get(":path", request.path).encode("latin-1")),
        ]
        if out[0][1] == b"CONNECT":
            out = [out[0], out[2]]
        return out + regular

    def _activate(self, s: H2Stream) -> None:
        if not self.is_open():
            self._finish(s, closed_error(self._error) if not self._goaway
                         else error("AWS_ERROR_HTTP_GOAWAY_RECEIVED"))
            return
        if len(self._streams) >= self._stream_limit():
            self._waiting.append(s)
            return
        self._start_stream(s)

    def _start_stream(self, s: H2Stream) -> None:
        body = s.request.body_stream
        try:
            headers = self._headers_for(s.request)
            sid = self.h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self._finish(s, error("AWS_ERROR_HTTP_STREAM_IDS_EXHAUSTED"))
            return
        except BaseException as exc:  # noqa: BLE001
            self._finish(s, exc)
            return
        s.stream_id = sid
        end = body is None and not s.manual_write
        try:
            self.h2.send_headers(sid, headers, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            self._finish(s, error("AWS_ERROR_HTTP_PROTOCOL_ERROR", str(exc)))
            return
        self._streams[sid] = s
        s.local_closed = end
        if self._manual_stream is False and self._stream_threshold is None:
            pass
        self._flush()
        if body is not None and not s.manual_write:
            s.write_task = self.loop.create_task(self._send_body(s, body))
        elif s.manual_write and s.writes:
            s.write_task = self.loop.create_task(self._manual_writer(s))

    def _queue_write(self, s: H2Stream, body: Any, end_stream: bool, fut: CrtFuture) -> None:
        if s.done or s.local_closed:
            fut.try_set_exception(error("AWS_ERROR_HTTP_MANUAL_WRITE_HAS_COMPLETED")
                                  if s.local_closed else error("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED"))
            return
        s.writes.append((body, end_stream, fut))
        if s.stream_id is not None and s.write_task is None:
            s.write_task = self.loop.create_task(self._manual_writer(s))

    async def _manual_writer(self, s: H2Stream) -> None:
        try:
            while s.writes and not s.done:
                body, end, fut = s.writes.popleft()
                try:
                    if body is not None:
                        await self._send_stream_data(s, body, end_stream=end)
                    elif end:
                        self._end_local(s)
                except BaseException as exc:  # noqa: BLE001
                    fut.try_set_exception(exc)
                    if not s.done:
                        self._reset_stream(s, exc)
                    return
                fut.try_set_result(None)
        finally:
            s.write_task = None
            while s.writes:
                s.writes.popleft()[2].try_set_exception(error("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED"))

    async def _send_body(self, s: H2Stream, body: Any) -> None:
        try:
            await self._send_stream_data(s, body, end_stream=True)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            if not s.done:
                self._reset_stream(s, exc if getattr(exc, "name", None)
                                   else error("AWS_ERROR_HTTP_INVALID_BODY_STREAM", str(exc)))
        finally:
            s.write_task = None

    async def _send_stream_data(self, s: H2Stream, body: Any, end_stream: bool) -> None:
        buf = memoryview(bytearray(BODY_CHUNK))
        sid = s.stream_id
        assert sid is not None
        while True:
            n = await read_chunk(body, buf)
            if s.done:
                raise error("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED")
            view = buf[:n]
            pos = 0
            while pos < n:
                window = self.h2.local_flow_control_window(sid)
                if window <= 0:
                    s.window_event = asyncio.Event()
                    await s.window_event.wait()
                    if s.done or not self._open:
                        raise closed_error(self._error)
                    continue
                size = min(window, n - pos, self.h2.max_outbound_frame_size)
                self.h2.send_data(sid, bytes(view[pos:pos + size]))
                pos += size
                self._flush()
                if self.protocol.write_paused:
                    await self.protocol.drain()
            if n == 0:
                break
        if end_stream:
            self._end_local(s)

    def _end_local(self, s: H2Stream) -> None:
        if s.local_closed or s.stream_id is None:
            return
        s.local_closed = True
        try:
            self.h2.end_stream(s.stream_id)
        except h2.exceptions.StreamClosedError:
            pass
        self._flush()
        if s.remote_closed:
            self._complete(s, None)

    def _reset_stream(self, s: H2Stream, exc: BaseException) -> None:
        if s.stream_id is not None:
            try:
                self.h2.reset_stream(s.stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass
            self._flush()
        self._complete(s, exc)

    # -- received data -------------------------------------------------------------------------
    def data_received(self, data: memoryview) -> None:
        try:
            events = self.h2.receive_data(bytes(data))
        except h2.exceptions.ProtocolError as exc:
            self._flush()
            self._fail_connection(error("AWS_ERROR_HTTP_PROTOCOL_ERROR", str(exc)))
            return
        for ev in events:
            handler = _HANDLERS.get(type(ev))
            if handler is not None:
                handler(self, ev)
        self._flush()

    def _on_response(self, ev: Any) -> None:
        s = self._streams.get(ev.stream_id)
        if s is None:
            return
        status = 0
        headers: list[tuple[str, str]] = []
        for name, value in ev.headers:
            n = name.decode("latin-1") if isinstance(name, bytes) else name
            v = value.decode("latin-1") if isinstance(value, bytes) else value
            if n == ":status":
                status = int(v)
            else:
                headers.append((n, v))
        if type(ev) is h2.events.ResponseReceived:
            s.public._response_status_code = status
        if s.public._on_response_cb is not None:
            self.dispatch.post(s.public._on_response, status, headers)

    def _on_data(self, ev: h2.events.DataReceived) -> None:
        sid = ev.stream_id
        s = self._streams.get(sid)
        n = ev.flow_controlled_length
        if n:
            # connection window
            if not self._manual_conn:
                self._conn_unacked += n
                if self._conn_unacked >= (self._conn_threshold or _AUTO_CONN_WINDOW // 2):
                    self.h2.increment_flow_control_window(self._conn_unacked)
                    self._conn_unacked = 0
            if s is not None and not self._manual_stream and not ev.stream_ended:
                s.unacked += n
                threshold = self._stream_threshold or (self.h2.local_settings.initial_window_size // 2 or 1)
                if s.unacked >= threshold:
                    try:
                        self.h2.increment_flow_control_window(s.unacked, sid)
                    except h2.exceptions.StreamClosedError:
                        pass
                    s.unacked = 0
        if s is not None and ev.data and s.public._on_body_cb is not None:
            self.dispatch.post(s.public._on_body, ev.data)

    def _on_stream_ended(self, ev: Any) -> None:
        s = self._streams.get(ev.stream_id)
        if s is None:
            return
        s.remote_closed = True
        if s.has_cbs:
            self.dispatch.post(s.public._on_h2_remote_end_stream)
        else:
            s.public._on_h2_remote_end_stream()
        if s.local_closed:
            self._complete(s, None)

    def _on_reset(self, ev: h2.events.StreamReset) -> None:
        s = self._streams.get(ev.stream_id)
        if s is None:
            return
        if s.remote_closed and int(ev.error_code) == 0:
            self._complete(s, None)  # the response was complete; the server just stops the upload
            return
        self._complete(s, error("AWS_ERROR_HTTP_RST_STREAM_RECEIVED",
                                f"the server reset stream {ev.stream_id} (error code {int(ev.error_code)})"))

    def _on_window(self, ev: h2.events.WindowUpdated) -> None:
        if ev.stream_id:
            s = self._streams.get(ev.stream_id)
            if s is not None and s.window_event is not None:
                s.window_event.set()
        else:
            for s in list(self._streams.values()):
                if s.window_event is not None:
                    s.window_event.set()

    def _on_settings(self, ev: h2.events.RemoteSettingsChanged) -> None:
        self._settings_seen = True
        # a larger initial window may unblock writers
        for s in list(self._streams.values()):
            if s.window_event is not None:
                s.window_event.set()
        self._start_waiting()
        if self._user_settings_cb is not None:
            from ..http import Http2Setting, Http2SettingID

            settings = []
            for code, change in ev.changed_settings.items():
                try:
                    settings.append(Http2Setting(Http2SettingID(int(code)), int(change.new_value)))
                except ValueError:
                    continue
            self.dispatch.post(self._user_settings_cb, settings)

    def _on_goaway(self, ev: h2.events.ConnectionTerminated) -> None:
        self._goaway = True
        last = ev.last_stream_id if ev.last_stream_id is not None else 0
        exc = error("AWS_ERROR_HTTP_GOAWAY_RECEIVED",
                    f"the server sent GOAWAY (error code {int(ev.error_code or 0)}, last stream {last})")
        for sid, s in list(self._streams.items()):
            if sid > last:
                self._complete(s, exc)
        while self._waiting:
            self._finish(self._waiting.popleft(), exc)
        if not self._streams:
            self._close()

    def _on_ping_ack(self, ev: Any) -> None:
        if self._pings:
            fut = self._pings.popleft()
            if not fut.done():
                fut.set_result(None)

    # -- completion ------------------------------------------------------------------------
    def _complete(self, s: H2Stream, exc: BaseException | None) -> None:
        if s.stream_id is not None:
            self._streams.pop(s.stream_id, None)
        if s.window_event is not None:
            s.window_event.set()
        if s.write_task is not None and exc is not None:
            s.write_task.cancel()
        self._finish(s, exc)
        self._start_waiting()
        if self._goaway and not self._streams and self._open:
            self._close()

    def _stream_limit(self) -> int:
        limit = self.h2.remote_settings.max_concurrent_streams
        # until the server's SETTINGS arrive, stay within the 100 streams RFC 9113 tells
        # every server to allow
        return limit if self._settings_seen else min(limit, 100)

    def _start_waiting(self) -> None:
        limit = self._stream_limit()
        while self._waiting and len(self._streams) < limit and self.is_open():
            self._start_stream(self._waiting.popleft())

    def _finish(self, s: H2Stream, exc: BaseException | None) -> None:
        if s.done:
            return
        s.done = True
        while s.writes:
            s.writes.popleft()[2].try_set_exception(exc or error("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED"))
        if exc is None and not s.has_cbs:
            s.public._on_complete(None)
        else:
            self.dispatch.post(s.public._on_complete, exc)

    def _fail_all(self, exc: BaseException) -> None:
        for s in list(self._streams.values()):
            self._complete(s, exc)
        while self._waiting:
            self._finish(self._waiting.popleft(), exc)

    def _fail_connection(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._open = False
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        was_open = self._open
        self._open = False
        if self.transport is None or self.transport.is_closing():
            if self.protocol.lost:
                self.connection_lost(None)
            return
        if was_open or not self._goaway:
            try:
                self.h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
        self.transport.close()

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._error is None and self._open and not self._goaway:
            self._error = error("AWS_IO_SOCKET_CLOSED", "the server closed the connection")
        self._open = False
        self._fail_all(self._error or closed_error(None))
        for fut in self._pings:
            if not fut.done():
                fut.set_exception(closed_error(None))
        self._pings.clear()
        detach, self.before_shutdown = self.before_shutdown, None
        if detach is not None:
            detach()
        if self._error is None:
            self.shutdown_future.try_set_result(None)
        else:
            self.shutdown_future.try_set_exception(self._error)


_HANDLERS: dict[type, Callable[[H2Connection, Any], None]] = {
    h2.events.ResponseReceived: H2Connection._on_response,
    h2.events.DataReceived: H2Connection._on_data,
    h2.events.StreamEnded: H2Connection._on_stream_ended,
    h2.events.StreamReset: H2Connection._on_reset,
    h2.events.WindowUpdated: H2Connection._on_window,
    h2.events.RemoteSettingsChanged: H2Connection._on_settings,
    h2.events.ConnectionTerminated: H2Connection._on_goaway,
    h2.events.PingAckReceived: H2Connection._on_ping_ack,
}
