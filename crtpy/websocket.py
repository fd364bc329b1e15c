"""WebSocket client connections (RFC 6455).

:func:`connect` opens a connection and reports it through ``on_connection_setup``; the
:class:`WebSocket` it provides sends frames with :meth:`WebSocket.send_frame`.  Incoming
frames arrive through three callbacks: ``on_incoming_frame_begin`` once per frame, then
``on_incoming_frame_payload`` zero or more times, then ``on_incoming_frame_complete``.
This is a frame-level API: messages split into fragments arrive as separate frames.

Callbacks
---------
crtpy calls every callback of one connection on a crtpy callback thread, one at a time,
in the order the events happened, and never on the network thread.  Blocking inside a
callback therefore cannot deadlock the connection, though it delays the connection's
later callbacks.  If a callback raises, the exception is logged and the WebSocket is
closed.  Every method may be called from any thread.

PING frames are answered with a PONG automatically, so never send a PONG in reply to a
PING yourself.  A CLOSE frame from the server is answered with a CLOSE frame echoing its
status code; the server then closes the connection.

Reading flow control
--------------------
By default frames are read as fast as they arrive (crtpy stops reading only while many
megabytes of payload wait for slow callbacks).  With ``manage_read_window=True`` the
connection delivers at most ``initial_read_window`` bytes of data-frame payload (TEXT,
BINARY, CONTINUATION) and then stops reading from the socket until
:meth:`WebSocket.increment_read_window` opens the window again.  Frame headers and the
payload of control frames (PING, PONG, CLOSE) do not count against the window.

Writing flow control
--------------------
:meth:`WebSocket.send_frame` only queues the frame; its ``on_complete`` callback runs
once the whole frame has been handed to the operating system.  Cap the number of frames
(or bytes) in flight to bound memory when sending faster than the peer reads.
"""
from __future__ import annotations

import logging
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import NativeResource
from ._errors import error
from ._websocket import frames as _frames
from ._websocket.handshake import encode_request, header_value, new_key, requested_protocols

if TYPE_CHECKING:
    from .http import HttpProxyOptions, HttpRequest
    from .io import ClientBootstrap, SocketOptions, TlsConnectionOptions

__all__ = [
    "MAX_PAYLOAD_LENGTH",
    "IncomingFrame",
    "OnConnectionSetupData",
    "OnConnectionShutdownData",
    "OnIncomingFrameBeginData",
    "OnIncomingFrameCompleteData",
    "OnIncomingFramePayloadData",
    "OnSendFrameCompleteData",
    "Opcode",
    "WebSocket",
    "connect",
    "create_handshake_request",
]

_log = logging.getLogger("crtpy.websocket")


class Opcode(IntEnum):
    """The type of a frame.  TEXT, BINARY and CONTINUATION carry message data ("data
    frames"); CLOSE, PING and PONG are control frames."""

    CONTINUATION = 0x0
    """A further fragment of the message that the last TEXT or BINARY frame started."""
    TEXT = 0x1
    """A data frame of UTF-8 text."""
    BINARY = 0x2
    """A data frame of arbitrary bytes."""
    CLOSE = 0x8
    """Starts or answers the closing handshake; the last frame an endpoint sends.  Its
    optional payload is a 2-byte status code followed by a UTF-8 reason."""
    PING = 0x9
    """A liveness check; the peer answers with a PONG (crtpy answers automatically)."""
    PONG = 0xA
    """The answer to a PING.  crtpy sends these itself."""

    def is_data_frame(self) -> bool:
        """True for TEXT, BINARY and CONTINUATION, the opcodes that count against the read
        window when ``manage_read_window`` is on."""
        return self.value <= 0x2


MAX_PAYLOAD_LENGTH = 0x7FFFFFFFFFFFFFFF
"""The largest payload a frame can carry (2**63 - 1 bytes, per RFC 6455)."""


@dataclass
class OnConnectionSetupData:
    """Argument of the ``on_connection_setup`` callback.

    Exactly one of ``exception`` and ``websocket`` is set.  The handshake response's
    status and headers are present whenever a response arrived (accepted or not); its
    body only when the server rejected the upgrade with a complete response.
    """

    exception: Exception | None = None
    """Why the connection failed, or None."""
    websocket: WebSocket | None = None
    """The connected WebSocket (keep a reference: dropping it closes the connection)."""
    handshake_response_status: int | None = None
    """HTTP status of the handshake response (101 when connected)."""
    handshake_response_headers: Sequence[tuple[str, str]] | None = None
    """Headers of the handshake response, as (name, value) pairs."""
    handshake_response_body: bytes | None = None
    """Body of a rejecting handshake response."""


@dataclass
class OnConnectionShutdownData:
    """Argument of the ``on_connection_shutdown`` callback."""

    exception: Exception | None = None
    """None after a local :meth:`WebSocket.close`; otherwise why the connection ended."""


@dataclass
class IncomingFrame:
    """Describes a frame being received."""

    opcode: Opcode
    """The frame's opcode."""
    payload_length: int
    """Length of the frame's payload in bytes."""
    fin: bool
    """True for the last (or only) fragment of a message."""

    def is_data_frame(self) -> bool:
        """True for TEXT, BINARY and CONTINUATION frames."""
        return self.opcode.is_data_frame()


@dataclass
class OnIncomingFrameBeginData:
    """Argument of ``on_incoming_frame_begin``: a frame's header has arrived."""

    frame: IncomingFrame
    """The frame that starts."""


@dataclass
class OnIncomingFramePayloadData:
    """Argument of ``on_incoming_frame_payload``: the next piece of the frame's payload.
    With ``manage_read_window``, the pieces of data frames shrink the read window."""

    frame: IncomingFrame
    """The frame this data belongs to."""
    data: bytes
    """The bytes that arrived."""


@dataclass
class OnIncomingFrameCompleteData:
    """Argument of ``on_incoming_frame_complete``, called once for every frame begun."""

    frame: IncomingFrame
    """The frame that ended."""
    exception: Exception | None = None
    """None if the whole frame arrived and was valid; otherwise what went wrong (for
    example invalid UTF-8, or the connection ended mid-frame)."""


@dataclass
class OnSendFrameCompleteData:
    """Argument of the ``on_complete`` callback of :meth:`WebSocket.send_frame`."""

    exception: Exception | None = None
    """None once the frame was written to the socket; otherwise why it was not sent."""


def _exception(name: str | None) -> Exception | None:
    return None if name is None else error(name)


class WebSocket(NativeResource):
    """An open WebSocket client connection, provided by :func:`connect` through
    :attr:`OnConnectionSetupData.websocket`.  Do not construct it yourself."""

    def __init__(self, binding: Any) -> None:
        super().__init__()
        self._binding = binding
        # Dropping the last reference closes the connection.
        self._finalizer = weakref.finalize(self, binding.close)

    def close(self) -> None:
        """Close the connection: send a CLOSE frame if none was sent, then close the socket.

        Returns at once; ``on_connection_shutdown`` reports the end.  Safe to call more
        than once, and on a connection that already ended."""
        self._binding.close()

    def send_frame(self,
                   opcode: Opcode,
                   payload: str | bytes | bytearray | memoryview | None = None,
                   *,
                   fin: bool = True,
                   on_complete: Callable[[OnSendFrameCompleteData], None] | None = None) -> None:
        """Queue one frame for sending.

        Args:
            opcode: the frame's :class:`Opcode`.
            payload: the payload: a bytes-like object, a ``str`` (sent as UTF-8, for any
                opcode), a binary file-like object (read to its end now), or None for an
                empty payload.  Sent as given: a TEXT payload is not checked for UTF-8, nor
                a control payload for the 125-byte limit.
            fin: False to send a fragment of a message that CONTINUATION frames continue;
                the last fragment has ``fin=True``.
            on_complete: called with an :class:`OnSendFrameCompleteData` once the frame has
                been written to the socket, or could not be.

        Raises:
            AwsCrtError: ``AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT`` once a CLOSE frame has
                been sent (or :meth:`close` called).
            ValueError: unknown opcode.
            TypeError: unsupported payload type.

        Sending a CONTINUATION with no fragmented message in progress, or a new TEXT/BINARY
        before the fragmented one ended, fails the frame and ends the connection with
        ``AWS_ERROR_INVALID_STATE``.
        """
        self._check_fork()
        op = Opcode(opcode)
        data = _payload_bytes(payload)
        if on_complete is not None and not callable(on_complete):
            raise TypeError("on_complete must be callable")
        chunks = _frames.encode_frame(int(op), data, bool(fin))
        self._binding.send_frame(int(op), bool(fin), chunks, on_complete)

    def increment_read_window(self, size: int) -> None:
        """Let ``size`` more bytes of data-frame payload arrive.  Does nothing unless the
        connection was made with ``manage_read_window=True``."""
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError("size must be an int")
        if size < 0:
            raise ValueError("increment size must not be negative")
        self._binding.increment_read_window(size)


def _payload_bytes(payload: Any) -> bytes | bytearray | memoryview:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray)):
        return payload
    if isinstance(payload, memoryview):
        return payload if payload.contiguous and payload.format in ("B", "b", "c") else payload.tobytes()
    if hasattr(payload, "read"):
        parts = []
        while True:
            chunk = payload.read(1 << 20)
            if not chunk:
                break
            parts.append(bytes(chunk))
        return b"".join(parts)
    try:
        return memoryview(payload).cast("B")
    except TypeError:
        raise TypeError(f"payload must be str, a bytes-like object, a binary stream or None, "
                        f"not {type(payload).__name__}") from None


class _Callbacks:
    """Turns driver events into the public data classes and calls the user's callbacks.
    Runs on callback worker threads, in order."""

    def __init__(self, on_setup: Callable[..., Any], on_shutdown: Callable[..., Any] | None,
                 on_begin: Callable[..., Any] | None, on_payload: Callable[..., Any] | None,
                 on_complete: Callable[..., Any] | None) -> None:
        self._on_setup = on_setup
        self._on_shutdown = on_shutdown
        self._on_begin = on_begin
        self._on_payload = on_payload
        self._on_complete = on_complete
        self._frame: IncomingFrame | None = None
        self._conn: Any = None

    def _call(self, name: str, fn: Callable[..., Any] | None, data: Any) -> None:
        if fn is None:
            return
        try:
            fn(data)
        except BaseException:  # noqa: BLE001 - a user's error closes the connection
            # Log the formatted traceback, not the exception object: a kept log record must
            # not keep the connection's frames alive.
            _log.error("exception in WebSocket %s callback; closing the WebSocket\n%s",
                       name, traceback.format_exc())
            if self._conn is not None:
                self._conn.close()

    def setup(self, exc: BaseException | None, conn: Any, status: int | None,
              headers: list[tuple[str, str]] | None, body: bytes | None) -> None:
        data = OnConnectionSetupData(exception=exc,  # type: ignore[arg-type]
                                     handshake_response_status=status,
                                     handshake_response_headers=headers,
                                     handshake_response_body=body)
        if conn is not None:
            self._conn = conn
            data.websocket = WebSocket(conn)
        self._call("on_connection_setup", self._on_setup, data)

    def shutdown(self, error_name: str | None) -> None:
        self._conn = None
        self._call("on_connection_shutdown", self._on_shutdown,
                   OnConnectionShutdownData(_exception(error_name)))
        self._on_setup = self._on_begin = self._on_payload = self._on_complete = None  # type: ignore[assignment]
        self._on_shutdown = None

    def frame_begin(self, opcode: int, payload_length: int, fin: bool) -> None:
        self._frame = IncomingFrame(Opcode(opcode), payload_length, fin)
        self._call("on_incoming_frame_begin", self._on_begin, OnIncomingFrameBeginData(self._frame))

    def frame_payload(self, data: bytes) -> None:
        assert self._frame is not None
        self._call("on_incoming_frame_payload", self._on_payload,
                   OnIncomingFramePayloadData(self._frame, data))

    def frame_complete(self, error_name: str | None) -> None:
        frame, self._frame = self._frame, None
        assert frame is not None
        self._call("on_incoming_frame_complete", self._on_complete,
                   OnIncomingFrameCompleteData(frame, _exception(error_name)))

    def send_complete(self, on_complete: Callable[..., Any], error_name: str | None) -> None:
        self._call("send_frame on_complete", on_complete,
                   OnSendFrameCompleteData(_exception(error_name)))


def _check_callable(name: str, fn: Any, required: bool = False) -> None:
    if fn is None and not required:
        return
    if not callable(fn):
        raise TypeError(f"{name} must be callable")


def _validate_handshake(request: Any) -> tuple[bytes, str | None, list[str]]:
    from .http import HttpRequest

    if not isinstance(request, HttpRequest):
        raise TypeError("handshake_request must be an HttpRequest")
    headers = list(request.headers)
    problems = []
    if request.method.upper() != "GET":
        problems.append("the method must be GET")
    upgrade = header_value(headers, "Upgrade")
    if upgrade is None or "websocket" not in [t.strip().lower() for t in upgrade.split(",")]:
        problems.append("'Upgrade: websocket' is required")
    conn = header_value(headers, "Connection")
    if conn is None or "upgrade" not in [t.strip().lower() for t in conn.split(",")]:
        problems.append("'Connection: Upgrade' is required")
    key = header_value(headers, "Sec-WebSocket-Key")
    if not key:
        problems.append("'Sec-WebSocket-Key' is required")
    if (header_value(headers, "Sec-WebSocket-Version") or "").strip() != "13":
        problems.append("'Sec-WebSocket-Version: 13' is required")
    if problems:
        raise error("AWS_ERROR_INVALID_ARGUMENT", "invalid WebSocket handshake request: " + "; ".join(problems))
    from ._websocket.handshake import HandshakeError

    try:
        return encode_request(request.method, request.path, headers), key, requested_protocols(headers)
    except HandshakeError as e:
        raise error(e.name, e.detail) from None


def connect(*,
            host: str,
            port: int | None = None,
            handshake_request: HttpRequest,
            bootstrap: ClientBootstrap | None = None,
            socket_options: SocketOptions | None = None,
            tls_connection_options: TlsConnectionOptions | None = None,
            proxy_options: HttpProxyOptions | None = None,
            manage_read_window: bool = False,
            initial_read_window: int | None = None,
            on_connection_setup: Callable[[OnConnectionSetupData], None],
            on_connection_shutdown: Callable[[OnConnectionShutdownData], None] | None = None,
            on_incoming_frame_begin: Callable[[OnIncomingFrameBeginData], None] | None = None,
            on_incoming_frame_payload: Callable[[OnIncomingFramePayloadData], None] | None = None,
            on_incoming_frame_complete: Callable[[OnIncomingFrameCompleteData], None] | None = None,
            ) -> None:
    """Open a WebSocket client connection asynchronously.

    ``on_connection_setup`` is called once with the outcome.  On success the other
    callbacks follow as frames arrive, and ``on_connection_shutdown`` ends the sequence;
    after a failed setup nothing else is called.  The connection ends when
    :meth:`WebSocket.close` is called, a CLOSE frame is exchanged, the socket closes, a
    protocol error occurs, or the :class:`WebSocket` is garbage collected.

    Args:
        host: server host name or address.
        port: server port; None means 443 with TLS, else 80.
        handshake_request: the HTTP GET upgrade request, typically from
            :func:`create_handshake_request` (with extra headers or another path as
            needed).  It must carry ``Upgrade: websocket``, ``Connection: Upgrade``,
            ``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version: 13``.
        bootstrap: client bootstrap (its event-loop group and resolver); None for the
            static default.
        socket_options: socket options; None for defaults.
        tls_connection_options: TLS settings; None for a plain connection.
        proxy_options: HTTP proxy to tunnel through (with CONNECT); None for none.
        manage_read_window: True to limit incoming data with a read window (see the
            module documentation).
        initial_read_window: the starting read window in bytes; required when
            ``manage_read_window`` is True, ignored otherwise.
        on_connection_setup: called with an :class:`OnConnectionSetupData`.
        on_connection_shutdown: called with an :class:`OnConnectionShutdownData` when a
            connection that was set up ends.
        on_incoming_frame_begin: called with an :class:`OnIncomingFrameBeginData` when a
            frame starts.
        on_incoming_frame_payload: called with :class:`OnIncomingFramePayloadData` for
            each piece of payload.
        on_incoming_frame_complete: called with :class:`OnIncomingFrameCompleteData` when
            a frame ends, once for every frame begun.

    Raises:
        ValueError: invalid handshake request, or a missing/negative read window.
        TypeError: an argument of the wrong type.
    """
    if manage_read_window:
        if initial_read_window is None:
            raise ValueError("initial_read_window is required when manage_read_window is True")
        if initial_read_window < 0:
            raise ValueError("initial_read_window must not be negative")
        window = int(initial_read_window)
    else:
        window = 0  # ignored without a managed window
    if not isinstance(host, str):
        raise TypeError("host must be a str")
    if port is None or port == 0:
        port = 443 if tls_connection_options is not None else 80
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("port must be between 1 and 65535")
    _check_callable("on_connection_setup", on_connection_setup, required=True)
    for name, fn in (("on_connection_shutdown", on_connection_shutdown),
                     ("on_incoming_frame_begin", on_incoming_frame_begin),
                     ("on_incoming_frame_payload", on_incoming_frame_payload),
                     ("on_incoming_frame_complete", on_incoming_frame_complete)):
        _check_callable(name, fn)
    request_bytes, key, protocols = _validate_handshake(handshake_request)

    from ._net.connect import pick_loop
    from ._websocket.driver import Connection

    loop_thread = pick_loop(bootstrap)
    loop_thread.check_usable()
    sink = _Callbacks(on_connection_setup, on_connection_shutdown, on_incoming_frame_begin,
                      on_incoming_frame_payload, on_incoming_frame_complete)
    conn = Connection(loop_thread, sink, manage_read_window=bool(manage_read_window),
                      initial_read_window=window)
    conn.start(host, port, request_bytes, key, bootstrap=bootstrap, socket_options=socket_options,
               tls_connection_options=tls_connection_options, proxy_options=proxy_options,
               protocols=protocols)


def create_handshake_request(*, host: str, path: str = '/') -> HttpRequest:
    """Build a WebSocket upgrade request: ``GET path`` with the headers ``Host``,
    ``Upgrade: websocket``, ``Connection: Upgrade``, a fresh random
    ``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version: 13``.  Add headers or change the
    path before passing it to :func:`connect`.

    Args:
        host: value of the Host header.
        path: path and query; "/" by default.
    """
    from .http import HttpHeaders, HttpRequest

    headers = HttpHeaders([
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", new_key()),
        ("Sec-WebSocket-Version", "13"),
    ])
    return HttpRequest("GET", path, headers)
