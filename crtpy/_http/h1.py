"""HTTP/1.1 client engine.

Response framing is parsed by ``httptools`` (llhttp) straight from the protocol's read
buffer; body pieces reach the stream as the ``bytes`` objects the parser makes, with no
further copy.  Requests are sent one at a time on a connection (keep-alive, no
pipelining).  All methods run on the connection's event loop, except those marked
"any thread", which hop onto it.
"""
from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Callable
from typing import Any

import httptools

from .._errors import error
from .._runtime.futures import CrtFuture
from .body import known_length
from .common import BODY_CHUNK, Dispatcher, call_on_loop, closed_error, helping_future, read_chunk
from .transport import ConnProtocol

CONTINUE_TIMEOUT_SEC = 1.0
# the rest of a body with at least this many bytes still to come skips the parser: the
# transport's own bytes objects become the chunks handed to on_body (no copy)
RAW_BODY_MIN = 256 * 1024
_NO_BODY_STATUS = (204, 304)


def encode_head(method: str, target: str, headers: list[tuple[str, str]],
                extra: list[tuple[str, str]] | None = None) -> bytes:
    """Serialize a request line and header block."""
    for text in (method, target):
        if not text or any(c in text for c in " \r\n"):
            raise error("AWS_ERROR_HTTP_INVALID_PATH" if text is target else "AWS_ERROR_HTTP_INVALID_METHOD")
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers if extra is None else [*headers, *extra]:
        if not name or "\r" in name or "\n" in name or ":" in name:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_NAME")
        if "\r" in value or "\n" in value:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_VALUE")
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


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
        "done",
        "got_final",
        "has_cbs",
        "head_method",
        "headers",
        "public",
        "request",
        "saw_100",
        "status",
        "until_eof",
    )

    def __init__(self, conn: H1Connection, public: Any, request: Any) -> None:
        self.conn = conn
        self.public = public
        self.request = request
        self.activated = False
        self.done = False
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_method = request.method.upper() == "HEAD"
        self._raw_headers: list[tuple[str, str]] = []
        self.got_final = False
        self.saw_100 = False
        self.continue_event: asyncio.Event | None = None
        self.body_task: asyncio.Task[None] | None = None
        self.until_eof = False
        self.body_written = False
        self.has_cbs = public._on_response_cb is not None or public._on_body_cb is not None

    def make_future(self) -> CrtFuture:
        return helping_future(self.conn.dispatch)

    # -- any thread -----------------------------------------------------------------
    def activate(self) -> None:
        self.conn.public_check()
        if self.activated:
            return
        self.activated = True
        call_on_loop(self.conn.loop, self.conn._enqueue, self)

    def update_window(self, increment: int) -> None:
        self.conn.update_window(increment)

    def write_data(self, body: Any, end_stream: bool) -> CrtFuture:
        raise error("AWS_ERROR_HTTP_MANUAL_WRITE_NOT_ENABLED")


class H1Connection:
    """The engine of one HTTP/1.1 connection."""

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
        protocol.set_handler(self)

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

    def update_connection_window(self, increment: int) -> None:
        self.update_window(increment)

    # -- loop side ------------------------------------------------------------------------
    def _grow_window(self, increment: int) -> None:
        if self._window is None:
            return
        self._window += increment
        if self._read_paused and self._window > 0 and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _enqueue(self, s: H1Stream) -> None:
        if not self._open or self._closing:
            self._finish(s, closed_error(self._error))
            return
        self._queue.append(s)
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

    def _send_head(self, s: H1Stream) -> None:
        req = s.request
        headers = list(req.headers)
        body = req.body_stream
        target = req.path
        extra: list[tuple[str, str]] = []
        if self._forward is not None:
            base, proxy_headers = self._forward
            if not target.startswith(("http://", "https://")):
                target = base + (target if target.startswith("/") else "/" + target)
            extra.extend(proxy_headers)
        lower = {n.lower(): v for n, v in headers}
        chunked = "chunked" in lower.get("transfer-encoding", "").lower()
        length: int | None = None
        if "content-length" in lower:
            try:
                length = int(lower["content-length"])
            except ValueError:
                raise error("AWS_ERROR_HTTP_INVALID_HEADER_VALUE", "bad Content-Length") from None
        elif body is not None and not chunked:
            length = known_length(body)
            if length is None:
                chunked = True
                extra.append(("Transfer-Encoding", "chunked"))
            else:
                extra.append(("Content-Length", str(length)))
        head = encode_head(req.method, target, headers, extra)
        expect = lower.get("expect", "").lower() == "100-continue"
        self.transport.write(head)  # type: ignore[union-attr]
        if body is not None and (chunked or (length or 0) > 0):
            if expect:
                s.continue_event = asyncio.Event()
            s.body_task = self.loop.create_task(self._send_body(s, body, chunked, length))
        elif chunked:
            self.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]

    async def _send_body(self, s: H1Stream, body: Any, chunked: bool, length: int | None) -> None:
        proto = self.protocol
        transport = self.transport
        try:
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
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the body failed: the stream fails
            self._fail_connection(exc if getattr(exc, "name", None) else
                                  error("AWS_ERROR_HTTP_INVALID_BODY_STREAM", str(exc)))
        finally:
            s.body_task = None
            if s.done and self._current is None:
                self._after_stream()

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
            s._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        s = self._current
        if s is None:
            raise error("AWS_ERROR_HTTP_PROTOCOL_ERROR", "response without a request")
        status = self._parser.get_status_code()
        headers = s._raw_headers
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
        lower = {n.lower() for n, _ in headers}
        te = ",".join(v for n, v in headers if n.lower() == "transfer-encoding").lower()
        s.until_eof = ("content-length" not in lower and "chunked" not in te
                       and status not in _NO_BODY_STATUS and not s.head_method)
        if not self._parser.should_keep_alive():
            self._closing = True
        if not s.until_eof and "chunked" not in te and not s.head_method and status not in _NO_BODY_STATUS:
            for n, v in headers:
                if n.lower() == "content-length":
                    if v.isdigit() and int(v) >= RAW_BODY_MIN:
                        self._raw_length = int(v)
                    break
        s.public._response_status_code = status
        if s.public._on_response_cb is not None:
            self.dispatch.post(s.public._on_response, status, headers)

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
                self.data_received(memoryview(rest))
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
                self.protocol.enter_raw()

    def raw_data(self, data: bytes) -> None:
        """Bytes that arrived while the rest of a large body streams (see enter_raw)."""
        left = self.raw_body_left
        if left <= 0:  # not in raw mode any more (a late read): parse it
            self.data_received(memoryview(data))
            return
        n = len(data)
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
        # the body is complete: back to parsing, with a parser for the next message
        self.protocol.leave_raw()
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
        self._fail_connection(exc)

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self._open = False
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
        self._finish(s, exc)
        if s.body_task is not None and not s.body_task.done():
            if exc is None and (s.body_written or (s.continue_event is not None and not s.saw_100)):
                pass  # the body task is about to end (or sees got_final and stops)
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
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.close()

    def _close(self, exc: BaseException | None) -> None:
        self._open = False
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        elif self.protocol.lost:
            self.connection_lost(None)
