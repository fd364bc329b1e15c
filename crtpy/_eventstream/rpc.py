"""Event-stream RPC client: the sans-I/O protocol core and its asyncio glue.

Protocol (carried in event-stream messages):

- every message has the INT32 headers ``:message-type``, ``:message-flags`` and
  ``:stream-id``; the first message of a stream also carries ``operation`` (STRING);
- stream id 0 carries connection-level messages (CONNECT, CONNECT_ACK, PING,
  PING_RESPONSE, PROTOCOL_ERROR, INTERNAL_ERROR); stream ids 1, 2, ... carry
  APPLICATION_MESSAGE / APPLICATION_ERROR of one continuation each, allocated in
  increasing order when a continuation is activated;
- the client sends CONNECT first and may send nothing but CONNECT-level messages until
  the server's CONNECT_ACK arrived; TERMINATE_STREAM in the flags ends a stream.

:class:`RpcClientCore` holds the protocol state and never touches a socket: the
connection feeds it received bytes and gets events back, and asks it to build outgoing
frames.  It is shared between user threads (sending) and the loop thread (receiving), so
every method runs under its lock.  :class:`RpcConnection` is the asyncio protocol that
owns one TCP/TLS connection on a crtpy loop thread and delivers events to the public
objects' handlers through one :class:`~crtpy._runtime.callbacks.CallbackQueue` per
connection (never on the loop thread, always in order).
"""
from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union, cast

from .._errors import error
from .._runtime.callbacks import CallbackQueue
from .._runtime.futures import CrtFuture
from ..eventstream import Header, HeaderType
from ..exceptions import AwsCrtError
from . import codec

_log = logging.getLogger("crtpy.eventstream.rpc")

# message types and flags (values of crtpy.eventstream.rpc.MessageType / MessageFlag)
APPLICATION_MESSAGE = 0
APPLICATION_ERROR = 1
PING = 2
PING_RESPONSE = 3
CONNECT = 4
CONNECT_ACK = 5
PROTOCOL_ERROR = 6
INTERNAL_ERROR = 7
_TYPE_COUNT = 8
FLAG_CONNECTION_ACCEPTED = 0x1
FLAG_TERMINATE_STREAM = 0x2

H_MESSAGE_TYPE = ":message-type"
H_MESSAGE_FLAGS = ":message-flags"
H_STREAM_ID = ":stream-id"
H_OPERATION = "operation"

MAX_STREAM_ID = (1 << 31) - 1


class Handshake(enum.IntEnum):
    NONE = 0            # nothing sent yet
    CONNECT_SENT = 1    # CONNECT handed to the connection
    ACK_RECEIVED = 2    # CONNECT_ACK arrived: the connection is usable


def runtime_error(name: str, message: str | None = None) -> AwsCrtError:
    """Synchronous failures of the RPC API (the reference raises RuntimeError; an
    AwsCrtError is one)."""
    base = error(name, message)
    assert isinstance(base, AwsCrtError)
    return base


def as_int32(value: Any, what: str) -> int:
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return codec.wrap_int(int(value), 32)


def as_payload(payload: Any) -> codec.BytesLike:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return payload
    raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")


def _error_payload(text: str) -> bytes:
    import json

    return json.dumps({"message": text}).encode()


# ---------------------------------------------------------------------------------------
# events produced by the core from received bytes
# ---------------------------------------------------------------------------------------
class ProtocolMessage(NamedTuple):
    headers: list[Header]
    payload: bytes
    message_type: int
    flags: int


class StreamMessage(NamedTuple):
    stream: Any            # the object registered with open_stream()
    headers: list[Header]
    payload: bytes
    message_type: int
    flags: int
    terminates: bool       # the stream is closed after this message


class Violation(NamedTuple):
    """The peer broke the protocol or sent undecodable bytes: send ``reply`` (if any)
    and shut the connection down with ``error``."""

    error: BaseException
    reply: tuple[bytes, codec.BytesLike, bytes] | None


Event = Union[ProtocolMessage, StreamMessage, Violation]  # noqa: UP007 - a runtime alias


class RpcClientCore:
    """Protocol state of one client connection (sans-I/O, thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.handshake = Handshake.NONE
        self.latest_stream_id = 0
        self.streams: dict[int, Any] = {}
        self.decoder = codec.Decoder()
        self.failed = False

    # -- sending ------------------------------------------------------------------------
    def check_send(self, message_type: int) -> str | None:
        """Handshake rules for an outgoing message; returns the name of the protocol
        error that sending it would be, or None (and advances the handshake)."""
        if message_type == CONNECT:
            if self.handshake != Handshake.NONE:
                return "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"
            self.handshake = Handshake.CONNECT_SENT
            return None
        if message_type == CONNECT_ACK:
            return "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"  # only servers acknowledge
        if message_type < CONNECT and self.handshake != Handshake.ACK_RECEIVED:
            return "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"
        return None

    def allocate_stream(self, stream: Any) -> int:
        if self.latest_stream_id >= MAX_STREAM_ID:
            raise runtime_error("AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR",
                                "all stream ids of this connection are used up")
        self.latest_stream_id += 1
        self.streams[self.latest_stream_id] = stream
        return self.latest_stream_id

    def release_stream(self, stream_id: int) -> Any:
        return self.streams.pop(stream_id, None)

    @staticmethod
    def build(user_headers: bytes, payload: codec.BytesLike, message_type: int, flags: int,
              stream_id: int, operation: bytes | None = None) -> tuple[bytes, codec.BytesLike, bytes]:
        """Frame a message: the user's (already encoded) headers, then the protocol's."""
        proto = bytearray(user_headers)
        for name, value in ((H_MESSAGE_TYPE, message_type), (H_MESSAGE_FLAGS, flags),
                            (H_STREAM_ID, stream_id)):
            proto.append(len(name))
            proto += name.encode()
            proto.append(HeaderType.INT32)
            proto += value.to_bytes(4, "big", signed=True)
        if operation is not None:
            proto.append(len(H_OPERATION))
            proto += H_OPERATION.encode()
            proto.append(HeaderType.STRING)
            proto += len(operation).to_bytes(2, "big")
            proto += operation
        return codec.encode_raw_parts(bytes(proto), payload)

    def protocol_error_frame(self, text: str) -> tuple[bytes, codec.BytesLike, bytes]:
        return self.build(b"", _error_payload(text), PROTOCOL_ERROR, 0, 0)

    # -- receiving ----------------------------------------------------------------------
    def receive(self, data: codec.BytesLike) -> list[Event]:
        """Feed received bytes; return what they complete.  After a Violation the core
        is dead and returns nothing more."""
        if self.failed:
            return []
        self.decoder.feed(data)
        return self.received()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Space for the socket to write into (BufferedProtocol, no copy)."""
        if self.failed:
            return memoryview(bytearray(codec._READ_CHUNK))  # read and drop
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> list[Event]:
        """``nbytes`` arrived in the last get_buffer() space; return what they complete."""
        if self.failed:
            return []
        self.decoder.buffer_updated(nbytes)
        return self.received()

    def received(self) -> list[Event]:
        events: list[Event] = []
        with self.lock:
            try:
                while True:
                    message = self.decoder.next_message()
                    if message is None:
                        break
                    event = self._route(message)
                    if event is not None:
                        events.append(event)
                        if isinstance(event, Violation):
                            self.failed = True
                            break
            except AwsCrtError as exc:
                self.failed = True
                events.append(Violation(exc, None))
        return events

    def _violation(self, text: str) -> Violation:
        return Violation(error("AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR", text),
                         self.protocol_error_frame(text))

    def _route(self, message: codec.Message) -> Event | None:
        stream_id = message_type = flags = None
        for h in message.headers:
            name = h.name
            if name == H_STREAM_ID and h.type == HeaderType.INT32:
                stream_id = h.value
            elif name == H_MESSAGE_TYPE and h.type == HeaderType.INT32:
                message_type = h.value
            elif name == H_MESSAGE_FLAGS and h.type == HeaderType.INT32:
                flags = h.value
        if stream_id is None or message_type is None or flags is None:
            return self._violation("a message arrived without the :message-type, :message-flags "
                                   "and :stream-id headers")
        if stream_id != 0:
            if self.handshake != Handshake.ACK_RECEIVED:
                return self._violation("a stream message arrived before the connection was acknowledged")
            if message_type not in (APPLICATION_MESSAGE, APPLICATION_ERROR):
                return self._violation(f"message type {message_type} is not allowed on a stream")
            stream = self.streams.get(stream_id)
            if stream is None:
                if 0 < stream_id <= self.latest_stream_id:
                    return None  # a message for a stream that already ended: dropped
                return self._violation(f"stream id {stream_id} was never opened by this client")
            terminates = bool(flags & FLAG_TERMINATE_STREAM)
            if terminates:
                del self.streams[stream_id]
            return StreamMessage(stream, message.headers, message.payload, message_type, flags, terminates)
        if message_type in (APPLICATION_MESSAGE, APPLICATION_ERROR) or not 0 <= message_type < _TYPE_COUNT:
            return self._violation(f"message type {message_type} is not allowed on stream id 0")
        if message_type == CONNECT_ACK:
            if self.handshake != Handshake.CONNECT_SENT:
                return self._violation("CONNECT_ACK arrived without a CONNECT")
            # Accepted or not, the acknowledgement completes the handshake; a rejected
            # client is expected to close (the reference behaves the same way).
            self.handshake = Handshake.ACK_RECEIVED
        return ProtocolMessage(message.headers, message.payload, message_type, flags)


# ---------------------------------------------------------------------------------------
# the asyncio side
# ---------------------------------------------------------------------------------------
class _Pending(NamedTuple):
    future: CrtFuture
    on_flush: Callable[..., Any] | None
    after: Callable[[BaseException | None], None] | None


def _drop_tracebacks(exc: BaseException) -> None:
    """Detach the tracebacks of a connect failure and of its causes.  The event loop
    (uvloop) may keep the underlying socket/TLS exception for a while; its traceback
    would keep the connect coroutine's frames, and with them the caller's TLS options,
    alive."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 16:
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
        seen += 1


def _closed_error() -> BaseException:
    return error("AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED")


class RpcConnection(asyncio.BufferedProtocol):
    """One client connection, pinned to one loop thread.

    ``owner`` is the public ClientConnection; it must provide ``_handler``,
    ``_connect_future`` and ``shutdown_future``.
    """

    def __init__(self, owner: Any, loop_thread: Any) -> None:
        self.owner = owner
        self.loop_thread = loop_thread
        self.loop: asyncio.AbstractEventLoop = loop_thread.loop
        self.core = RpcClientCore()
        self.callbacks = CallbackQueue()
        self.transport: asyncio.Transport | None = None
        self._outbox: deque[tuple[tuple[bytes, codec.BytesLike, bytes], _Pending]] = deque()
        self._outbox_scheduled = False
        self._unflushed: deque[_Pending] = deque()
        self._paused = False
        self._open = False          # True from setup until shutdown starts
        self._shutting_down = False
        self._reason: BaseException | None = None
        self._user_closed = False
        self._finished = False

    # -- setup ------------------------------------------------------------------------------
    async def connect(self, host_name: str, port: int, bootstrap: Any, socket_options: Any,
                      tls_connection_options: Any) -> None:
        from .._net.connect import open_connection

        try:
            await open_connection(host_name, port, protocol_factory=lambda: self, bootstrap=bootstrap,
                                  socket_options=socket_options,
                                  tls_connection_options=tls_connection_options)
        except BaseException as exc:  # noqa: BLE001 - reported to the handler and future
            if self.transport is not None:  # failed after the protocol was attached
                self.transport.abort()
                return
            failure = exc if isinstance(exc, Exception) else error("AWS_IO_SOCKET_CLOSED")
            _drop_tracebacks(failure)
            self.callbacks.post(self._report_setup, self.owner, None, failure)
            self._finished = True
            self.owner = None  # nothing more will happen on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection: asyncio passes a Transport here.
        self.transport = stream = cast(asyncio.Transport, transport)
        try:
            stream.set_write_buffer_limits(high=0)
        except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
            pass
        with self.core.lock:
            self._open = True
        self.callbacks.post(self._report_setup, self.owner, self.owner, None)

    @staticmethod
    def _report_setup(owner: Any, connection: Any, failure: BaseException | None) -> None:
        handler = owner._handler
        try:
            if handler is not None:
                handler.on_connection_setup(connection=connection, error=failure)
        except BaseException:  # noqa: BLE001
            _log.exception("exception in on_connection_setup")
        finally:
            # try_*: the user may have cancelled (or otherwise completed) the future
            future = owner._connect_future
            if failure is not None:
                future.try_set_exception(failure)
            elif not future.try_set_result(None):
                # Nobody waits for this connection any more: close it rather than leave
                # it open with no owner (the handler sees the shutdown as usual).
                owner.close()

    # -- state queries (any thread) -----------------------------------------------------------
    def is_open(self) -> bool:
        return self._open

    # -- sending (any thread) ---------------------------------------------------------------
    def send(self, user_headers: bytes, payload: codec.BytesLike, message_type: int, flags: int,
             on_flush: Callable[..., Any] | None, *, stream: Any = None,
             operation: bytes | None = None, activate: bool = False) -> CrtFuture:
        """Queue one message.  ``stream``: the ClientContinuation for stream messages;
        ``activate``: allocate its stream id (first message).  Errors that the reference
        reports synchronously are raised; the rest fail the returned future."""
        future = CrtFuture()
        future.set_running_or_notify_cancel()
        core = self.core
        violation: str | None = None
        with core.lock:
            if stream is not None:
                if activate:
                    if not self._open:
                        raise runtime_error("AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED")
                    stream_id = core.allocate_stream(stream)
                    stream._stream_id = stream_id
                    stream._activated = True
                else:
                    if not stream._activated:
                        raise runtime_error("AWS_ERROR_EVENT_STREAM_RPC_STREAM_NOT_ACTIVATED")
                    if stream._closed:
                        raise runtime_error("AWS_ERROR_EVENT_STREAM_RPC_STREAM_CLOSED")
                    stream_id = stream._stream_id
            else:
                stream_id = 0
            if not self._open:
                future.set_exception(_closed_error())
                self._post_flush(on_flush, future.exception())
                return future
            violation = core.check_send(message_type)
            if violation is None:
                try:
                    parts = core.build(user_headers, payload, message_type, flags, stream_id, operation)
                except AwsCrtError:  # too large: nothing was sent
                    if activate:
                        core.release_stream(stream_id)
                        stream._activated = False
                    raise
                after = None
                if stream is not None and flags & FLAG_TERMINATE_STREAM:
                    after = self._stream_ended_after_flush(stream)
                self._outbox.append((parts, _Pending(future, on_flush, after)))
                if not self._outbox_scheduled:
                    self._outbox_scheduled = True
                    self.loop.call_soon_threadsafe(self._drain_outbox)
                return future
        failure = error(violation)
        future.set_exception(failure)
        self._post_flush(on_flush, failure)
        self.loop.call_soon_threadsafe(self._shutdown, error(violation), None)
        return future

    def _stream_ended_after_flush(self, stream: Any) -> Callable[[BaseException | None], None]:
        def ended(exc: BaseException | None) -> None:
            if exc is None:
                self._close_stream(stream)
        return ended

    def _post_flush(self, on_flush: Callable[..., Any] | None, exc: BaseException | None) -> None:
        if on_flush is not None:
            self.callbacks.post(on_flush, error=exc)

    # -- writing (loop thread) ----------------------------------------------------------------
    def _drain_outbox(self) -> None:
        with self.core.lock:
            items = list(self._outbox)
            self._outbox.clear()
            self._outbox_scheduled = False
        transport = self.transport
        for parts, pending in items:
            if transport is None or transport.is_closing() or self._finished:
                self._settle(pending, _closed_error())
                continue
            payload = parts[1]
            if len(payload) < 16384:
                transport.write(b"".join(parts))
            else:
                transport.writelines(parts)
            self._unflushed.append(pending)
        if not self._paused:
            self._flushed(None)

    def _flushed(self, exc: BaseException | None) -> None:
        while self._unflushed:
            self._settle(self._unflushed.popleft(), exc)

    def _settle(self, pending: _Pending, exc: BaseException | None) -> None:
        if exc is None:
            pending.future.try_set_result(None)
        else:
            pending.future.try_set_exception(exc)
        if pending.after is not None:
            pending.after(exc)
        self._post_flush(pending.on_flush, exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._flushed(None)

    # -- receiving (loop thread) ----------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return self.core.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._dispatch(self.core.buffer_updated(nbytes))

    def data_received(self, data: bytes) -> None:  # for transports without buffered reads
        self._dispatch(self.core.receive(data))

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, StreamMessage):
                stream = event.stream
                self.callbacks.post(stream._deliver, event.headers, event.payload,
                                    event.message_type, event.flags)
                if event.terminates:
                    self._close_stream(stream)
            elif isinstance(event, ProtocolMessage):
                owner = self.owner
                self.callbacks.post(owner._deliver, event.headers, event.payload,
                                    event.message_type, event.flags)
            else:
                self._shutdown(event.error, event.reply)

    def eof_received(self) -> bool | None:
        self._shutdown(error("AWS_IO_SOCKET_CLOSED", "the server closed the connection"), None)
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._shutting_down:
            reason: BaseException
            if exc is None:
                reason = error("AWS_IO_SOCKET_CLOSED", "the connection closed")
            else:
                from .._net.errors import map_connect_error

                reason = map_connect_error(exc)
                if not isinstance(reason, AwsCrtError):
                    reason = error("AWS_IO_SOCKET_CLOSED", f"the connection closed: {exc}")
            self._begin_shutdown(reason)
        self._finish()

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """User close (any thread): send what is queued, then close."""
        with self.core.lock:
            if self._user_closed or self._shutting_down:
                return
            self._user_closed = True
            self._open = False  # no more sends; what is already queued still goes out
        try:
            self.loop.call_soon_threadsafe(self._shutdown, None, None)
        except RuntimeError:  # the loop is gone: nothing left to close
            pass

    def _begin_shutdown(self, reason: BaseException | None) -> bool:
        with self.core.lock:
            if self._shutting_down:
                return False
            self._shutting_down = True
            self._open = False
            self._reason = reason
        return True

    def _shutdown(self, reason: BaseException | None,
                  reply: tuple[bytes, codec.BytesLike, bytes] | None) -> None:
        if not self._begin_shutdown(reason):
            return
        self._drain_outbox()  # messages queued before the close still go out (or fail)
        transport = self.transport
        if transport is None:
            self._finish()
            return
        if reply is not None and not transport.is_closing():
            transport.write(b"".join(reply))
        transport.close()

    def _close_stream(self, stream: Any) -> None:
        with self.core.lock:
            if stream._closed:
                return
            stream._closed = True
            self.core.release_stream(stream._stream_id)
        self.callbacks.post(stream._on_closed)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._flushed(None if self._user_closed and self._reason is None else _closed_error())
        with self.core.lock:
            self._open = False
            outbox = list(self._outbox)
            self._outbox.clear()
            streams = [self.core.streams[k] for k in sorted(self.core.streams)]
            self.core.streams.clear()
        for _parts, pending in outbox:
            self._settle(pending, _closed_error())
        for stream in streams:
            self._close_stream(stream)
        owner = self.owner
        if owner is not None:
            self.callbacks.post(owner._report_shutdown, self._reason)
        self.transport = None
        self.owner = None


def encode_user_headers(headers: Sequence[Header] | None) -> bytes:
    """Encode the user's headers, raising the reference's synchronous errors."""
    if headers is None:
        return b""
    return codec.encode_headers(headers)
