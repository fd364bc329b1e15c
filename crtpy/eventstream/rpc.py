"""Client for the event-stream RPC protocol (the protocol of Greengrass IPC).

A :class:`ClientConnection` is one TCP (optionally TLS) connection that carries
event-stream messages.  Connection-level ("protocol") messages travel on stream id 0;
each request/response exchange or subscription is a :class:`ClientContinuation` with a
stream id of its own.

Typical use::

    ClientConnection.connect(handler=my_handler, host_name=..., port=...)
    # my_handler.on_connection_setup(connection, error) receives the connection;
    # send MessageType.CONNECT with send_protocol_message() and wait for the
    # MessageType.CONNECT_ACK in on_protocol_message() (flags carry
    # MessageFlag.CONNECTION_ACCEPTED when the server accepted), then:
    stream = connection.new_stream(my_stream_handler)
    stream.activate(operation="...", message_type=MessageType.APPLICATION_MESSAGE, payload=...)

Handlers' callbacks run one at a time, in order, on a crtpy callback thread (never on
the connection's event-loop thread), so a callback may send messages and even wait on
the futures those sends return.  Pings are not answered automatically: a PING arrives
in :meth:`ClientConnectionHandler.on_protocol_message` like any protocol message.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import IntEnum
from typing import Any

from .. import NativeResource
from .._eventstream import rpc as _impl
from .._runtime.futures import CrtFuture, failed
from ..eventstream import Header
from ..io import ClientBootstrap, SocketOptions, TlsConnectionOptions

__all__ = [
    "ClientConnection",
    "ClientConnectionHandler",
    "ClientContinuation",
    "ClientContinuationHandler",
    "MessageFlag",
    "MessageType",
]


class MessageType(IntEnum):
    """Kinds of RPC message.

    APPLICATION_MESSAGE and APPLICATION_ERROR belong to streams; every other type is a
    protocol message (stream id 0)."""

    APPLICATION_MESSAGE = 0
    """A message of the application, on a stream."""
    APPLICATION_ERROR = 1
    """An application-level error, on a stream."""
    PING = 2
    """Liveness probe; the peer may answer with PING_RESPONSE."""
    PING_RESPONSE = 3
    """Answer to a PING."""
    CONNECT = 4
    """The first message a client sends."""
    CONNECT_ACK = 5
    """The server's answer to CONNECT; accepted if the flags hold CONNECTION_ACCEPTED."""
    PROTOCOL_ERROR = 6
    """The sender saw a protocol violation."""
    INTERNAL_ERROR = 7
    """The sender failed internally."""

    def __format__(self, format_spec: str) -> str:
        return str(self)


class MessageFlag:
    """Bit flags of RPC messages (combine with ``|``)."""

    NONE = 0
    """No flag."""
    CONNECTION_ACCEPTED = 0x1
    """On a CONNECT_ACK: the server accepted the connection."""
    TERMINATE_STREAM = 0x2
    """This is the last message of its stream, in either direction."""

    def __format__(self, format_spec: str) -> str:
        return str(self)


class ClientConnectionHandler(ABC):
    """Receives the events of one :class:`ClientConnection`; subclass it.

    Callbacks run serially on a crtpy callback thread, and
    :meth:`on_connection_setup` is always the first."""

    @abstractmethod
    def on_connection_setup(self, connection: ClientConnection | None, error: Exception | None,
                            **kwargs: Any) -> None:
        """The connection attempt finished.

        Args:
            connection (Optional[ClientConnection]): the connection, or None on failure.
            error (Optional[Exception]): None on success, else why it failed (no
                further callback follows a failure).
            **kwargs (Any): for forward compatibility.
        """

    @abstractmethod
    def on_connection_shutdown(self, reason: Exception | None, **kwargs: Any) -> None:
        """The connection has shut down (only after a successful setup).

        Args:
            reason (Optional[Exception]): None if :meth:`ClientConnection.close` was
                called, otherwise the error that ended the connection.
            **kwargs (Any): for forward compatibility.
        """

    @abstractmethod
    def on_protocol_message(self, headers: Sequence[Header], payload: bytes,
                            message_type: MessageType, flags: int, **kwargs: Any) -> None:
        """A connection-level message (stream id 0) arrived.

        Args:
            headers (Sequence[Header]): all its headers, protocol headers included.
            payload (bytes): its payload.
            message_type (MessageType): its type.
            flags (int): its :class:`MessageFlag` bits.
            **kwargs (Any): for forward compatibility.
        """


class ClientContinuationHandler(ABC):
    """Receives the events of one :class:`ClientContinuation`; subclass it.

    Its callbacks run in order with those of the connection's handler."""

    @abstractmethod
    def on_continuation_message(self, headers: Sequence[Header], payload: bytes,
                                message_type: MessageType, flags: int, **kwargs: Any) -> None:
        """A message arrived on this stream.

        Args:
            headers (Sequence[Header]): all its headers, protocol headers included.
            payload (bytes): its payload.
            message_type (MessageType): its type.
            flags (int): its :class:`MessageFlag` bits.
            **kwargs (Any): for forward compatibility.
        """

    @abstractmethod
    def on_continuation_closed(self, **kwargs: Any) -> None:
        """The stream is closed: a TERMINATE_STREAM message was sent or received, or
        the connection shut down.  Nothing more can be sent or received on it.

        Args:
            **kwargs (Any): for forward compatibility.
        """


def _message_args(headers: Sequence[Header] | None, payload: Any, message_type: Any,
                  flags: Any) -> tuple[bytes, Any, int, int]:
    block = _impl.encode_user_headers(headers)
    body = _impl.as_payload(payload)
    mtype = _impl.as_int32(message_type, "message_type")
    mflags = _impl.as_int32(0 if flags is None else flags, "flags")
    return block, body, mtype, mflags


def _callback_future() -> CrtFuture:
    fut = CrtFuture()
    fut.set_running_or_notify_cancel()  # such futures cannot be cancelled
    return fut


class ClientConnection(NativeResource):
    """A client connection of the event-stream RPC protocol.

    Make one with :meth:`connect`.  An open connection stays open, even with no
    reference to it left, until :meth:`close` is called or the peer ends it.

    Attributes:
        host_name (str): the host connected to.
        port (int): the port connected to.
        shutdown_future (concurrent.futures.Future): completes when the connection has
            shut down: None after :meth:`close`, else the error that ended it.
    """

    __slots__ = ("_connect_future", "_handler", "_impl", "host_name", "port", "shutdown_future")

    def __init__(self, host_name: str, port: int, handler: ClientConnectionHandler) -> None:
        # Not for direct use: call ClientConnection.connect().
        super().__init__()
        self.host_name: str = host_name
        self.port: int = port
        self.shutdown_future: Future[None] = _callback_future()
        self._connect_future: Future[None] = _callback_future()
        self._handler: ClientConnectionHandler = handler
        self._impl: _impl.RpcConnection | None = None

    @classmethod
    def connect(cls, *, handler: ClientConnectionHandler, host_name: str, port: int,
                bootstrap: ClientBootstrap | None = None,
                socket_options: SocketOptions | None = None,
                tls_connection_options: TlsConnectionOptions | None = None) -> Future[None]:
        """Open a connection (asynchronously).

        Args:
            handler: receives this connection's events; its ``on_connection_setup``
                gets the connection (or the error).
            host_name: host to connect to.
            port: port to connect to.
            bootstrap: bootstrap whose event loops and resolver to use (the static
                default when None).
            socket_options: socket options (defaults when None).
            tls_connection_options: TLS options, or None for plain TCP.

        Returns:
            concurrent.futures.Future: completes with None once the connection is set
            up and ``on_connection_setup`` has run, or with the error.  Sending
            ``MessageType.CONNECT`` is up to the caller.
        """
        from .._net.connect import pick_loop

        if not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if socket_options is None:
            socket_options = SocketOptions()
        connection = cls(host_name, port, handler)
        connection._check_fork()
        loop_thread = pick_loop(bootstrap)
        if not 0 < port < 65536:
            from .._errors import error

            exc = error("AWS_IO_SOCKET_INVALID_ADDRESS", f"port {port} is out of range")
            impl = _impl.RpcConnection(connection, loop_thread)
            impl.callbacks.post(impl._report_setup, connection, None, exc)
            return connection._connect_future
        impl = _impl.RpcConnection(connection, loop_thread)
        connection._impl = impl
        loop_thread.run_coroutine(impl.connect(host_name, port, bootstrap, socket_options,
                                               tls_connection_options))
        return connection._connect_future

    # -- events from the implementation (callback thread) --------------------------------------
    def _deliver(self, headers: list[Header], payload: bytes, message_type: int, flags: int) -> None:
        try:
            mtype: Any = MessageType(message_type)
        except ValueError:
            mtype = message_type
        self._handler.on_protocol_message(headers=headers, payload=payload, message_type=mtype,
                                          flags=flags)

    def _report_shutdown(self, reason: BaseException | None) -> None:
        try:
            self._handler.on_connection_shutdown(reason=reason)  # type: ignore[arg-type]
        finally:
            if reason is not None:
                self.shutdown_future.set_exception(reason)
            else:
                self.shutdown_future.set_result(None)
            self._impl = None

    # -- public API --------------------------------------------------------------------------
    def close(self) -> Future[None]:
        """Start closing the connection (no effect if it is already closing).

        Messages already sent are written first.  Returns :attr:`shutdown_future`."""
        impl = self._impl
        if impl is not None:
            impl.close()
        return self.shutdown_future

    def is_open(self) -> bool:
        """True while the connection is usable (see :attr:`shutdown_future` for the end
        of the shutdown)."""
        impl = self._impl
        return impl is not None and impl.is_open()

    def send_protocol_message(self, *, headers: Sequence[Header] | None = None,
                              payload: bytes | bytearray | None = None,
                              message_type: MessageType, flags: int | None = None,
                              on_flush: Callable[..., None] | None = None) -> Future[None]:
        """Send a connection-level message (stream id 0).

        Args:
            headers: message headers.
            payload: message payload.
            message_type: message type.
            flags: :class:`MessageFlag` bits.
            on_flush: optional ``fn(error, **kwargs)`` called once the message is
                written to the socket (``error`` None) or has failed.

        Returns:
            concurrent.futures.Future: None once written, or the error.  Sending
            anything but CONNECT before the server's CONNECT_ACK is a protocol error
            that also shuts the connection down.
        """
        self._check_fork()
        args = _message_args(headers, payload, message_type, flags)
        impl = self._impl
        if impl is None:
            from .._errors import error

            exc = error("AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED")
            if on_flush is not None:
                on_flush(error=exc)
            return failed(exc)
        return impl.send(*args, on_flush)

    def new_stream(self, handler: ClientContinuationHandler) -> ClientContinuation:
        """A new stream on this connection.  Nothing is sent until
        :meth:`ClientContinuation.activate` is called."""
        return ClientContinuation(handler, self)


class ClientContinuation(NativeResource):
    """The messages of one stream id.  Make one with :meth:`ClientConnection.new_stream`.

    Attributes:
        connection (ClientConnection): the stream's connection.
        closed_future (concurrent.futures.Future): completes with None once the stream
            has closed.
    """

    def __init__(self, handler: ClientContinuationHandler, connection: ClientConnection) -> None:
        # Not for direct use: call ClientConnection.new_stream().
        super().__init__()
        self._handler = handler
        self.connection: ClientConnection = connection
        self.closed_future: Future[None] = _callback_future()
        self._stream_id = 0
        self._activated = False
        self._closed = False

    def activate(self, *, operation: str, headers: Sequence[Header] | None = None,
                 payload: bytes | bytearray | None = None,
                 message_type: MessageType, flags: int | None = None,
                 on_flush: Callable[..., None] | None = None) -> Future[None]:
        """Open the stream by sending its first message (once per continuation; use
        :meth:`send_message` afterwards).

        Args:
            operation: the operation name, sent in the ``operation`` header.
            headers: message headers.
            payload: message payload.
            message_type: message type.
            flags: :class:`MessageFlag` bits.
            on_flush: optional ``fn(error, **kwargs)`` called once the message is
                written or has failed.

        Returns:
            concurrent.futures.Future: None once written, or the error.
        """
        self._check_fork()
        if not isinstance(operation, str):
            raise TypeError(f"operation must be str, not {type(operation).__name__}")
        if self._activated:
            raise RuntimeError("this continuation is already activated")
        op = operation.encode("utf-8")
        if len(op) > 32767:
            raise _impl.runtime_error("AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN")
        args = _message_args(headers, payload, message_type, flags)
        impl = self.connection._impl
        if impl is None:
            raise _impl.runtime_error("AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED")
        return impl.send(*args, on_flush, stream=self, operation=op, activate=True)

    def send_message(self, *, headers: Sequence[Header] | None = None,
                     payload: bytes | bytearray | None = None,
                     message_type: MessageType, flags: int | None = None,
                     on_flush: Callable[..., None] | None = None) -> Future[None]:
        """Send a further message on an activated stream.

        Args:
            headers: message headers.
            payload: message payload.
            message_type: message type.
            flags: :class:`MessageFlag` bits (TERMINATE_STREAM ends the stream).
            on_flush: optional ``fn(error, **kwargs)`` called once the message is
                written or has failed.

        Returns:
            concurrent.futures.Future: None once written, or the error.
        """
        self._check_fork()
        args = _message_args(headers, payload, message_type, flags)
        if not self._activated:
            raise _impl.runtime_error("AWS_ERROR_EVENT_STREAM_RPC_STREAM_NOT_ACTIVATED")
        impl = self.connection._impl
        if impl is None or self._closed:
            raise _impl.runtime_error("AWS_ERROR_EVENT_STREAM_RPC_STREAM_CLOSED")
        return impl.send(*args, on_flush, stream=self)

    def is_closed(self) -> bool:
        """True once the stream has closed."""
        return self._closed

    # -- events from the implementation (callback thread) --------------------------------------
    def _deliver(self, headers: list[Header], payload: bytes, message_type: int, flags: int) -> None:
        try:
            mtype: Any = MessageType(message_type)
        except ValueError:
            mtype = message_type
        self._handler.on_continuation_message(headers=headers, payload=payload,
                                              message_type=mtype, flags=flags)

    def _on_closed(self) -> None:
        try:
            self._handler.on_continuation_closed()
        finally:
            self.closed_future.set_result(None)
