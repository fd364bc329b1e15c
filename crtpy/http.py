"""HTTP/1.1 and HTTP/2 client connections, requests and headers.

Connections are created with :meth:`HttpClientConnection.new` (HTTP/1.1, or HTTP/2 when
TLS ALPN picks ``h2``) or :meth:`Http2ClientConnection.new`; both return a
``concurrent.futures.Future`` completing with the connection.  A request becomes a stream
with ``connection.request(...)``; nothing is sent until :meth:`HttpClientStream.activate`.

Callbacks given to a stream (``on_response``, ``on_body``) are called with keyword
arguments, in order, on a crtpy callback thread (never on an event-loop thread):

* ``on_response(http_stream, status_code, headers, **kwargs)``
* ``on_body(http_stream, chunk, **kwargs)``
"""
from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any

from . import NativeResource
from ._errors import error
from ._http.body import wrap_stream
from ._runtime.futures import CrtFuture

__all__ = [
    "Http2ClientConnection",
    "Http2ClientStream",
    "Http2Setting",
    "Http2SettingID",
    "HttpClientConnection",
    "HttpClientConnectionBase",
    "HttpClientStream",
    "HttpClientStreamBase",
    "HttpConnectionBase",
    "HttpHeaders",
    "HttpMessageBase",
    "HttpProxyAuthenticationType",
    "HttpProxyConnectionType",
    "HttpProxyOptions",
    "HttpRequest",
    "HttpStreamBase",
    "HttpVersion",
]

# These names are only needed for annotations; crtpy.io may load lazily.
ClientBootstrap = Any
SocketOptions = Any
TlsConnectionOptions = Any
InputStream = Any


class HttpVersion(IntEnum):
    """HTTP protocol version of a connection or stream."""

    Unknown = 0
    Http1_0 = 1
    Http1_1 = 2
    Http2 = 3


class Http2SettingID(IntEnum):
    """Identifiers of the HTTP/2 SETTINGS parameters (RFC 9113 section 6.5.2)."""

    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5
    MAX_HEADER_LIST_SIZE = 6


class Http2Setting:
    """One HTTP/2 setting: an :class:`Http2SettingID` and its value.

    Raises ValueError when the value is outside the range RFC 9113 allows for the id.

    Attributes:
        id (Http2SettingID): which setting.
        value (int): its value.
    """

    VALID_RANGES: dict[Http2SettingID, tuple[int, int]] = {  # noqa: RUF012 - a class attribute, as in the reference
        Http2SettingID.HEADER_TABLE_SIZE: (0, 0xFFFFFFFF),
        Http2SettingID.ENABLE_PUSH: (0, 1),
        Http2SettingID.MAX_CONCURRENT_STREAMS: (0, 0xFFFFFFFF),
        Http2SettingID.INITIAL_WINDOW_SIZE: (0, 0x7FFFFFFF),
        Http2SettingID.MAX_FRAME_SIZE: (0x4000, 0xFFFFFF),
        Http2SettingID.MAX_HEADER_LIST_SIZE: (0, 0xFFFFFFFF),
    }

    def __init__(self, id: Http2SettingID, value: int) -> None:
        if not isinstance(id, Http2SettingID):
            raise TypeError(f"id must be an Http2SettingID, not {type(id).__name__}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"value must be an int, not {type(value).__name__}")
        low, high = self.VALID_RANGES[id]
        if value < low or value > high:
            raise ValueError(f"{id.name} must be between {low} and {high}, got {value}")
        self.id = id
        self.value = value

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.id.name}={self.value})"

    def __repr__(self) -> str:
        return self.__str__()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Http2Setting):
            return NotImplemented
        return self.id == other.id and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.id, self.value))


# ---------------------------------------------------------------------------------------
# connections
# ---------------------------------------------------------------------------------------
class HttpConnectionBase(NativeResource):
    """Common base of HTTP connections."""

    def __init__(self) -> None:
        super().__init__()
        self._shutdown_future: CrtFuture = CrtFuture()
        self._version = HttpVersion.Unknown
        self._impl: Any = None

    @property
    def shutdown_future(self) -> concurrent.futures.Future[None]:
        """concurrent.futures.Future: completes (with None, or the exception that caused
        it) once the connection has completely shut down."""
        return self._shutdown_future

    @property
    def version(self) -> HttpVersion:
        """HttpVersion: the protocol this connection speaks."""
        return self._version

    def is_open(self) -> bool:
        """Return True while the connection is open and can take new requests."""
        impl = self._impl
        return impl is not None and impl.is_open()


class HttpClientConnectionBase(HttpConnectionBase):
    """Common base of client connections."""

    def __init__(self) -> None:
        super().__init__()
        self._host_name = ""
        self._port = 0

    @property
    def host_name(self) -> str:
        """str: the remote host name."""
        return self._host_name

    @property
    def port(self) -> int:
        """int: the remote port."""
        return self._port

    def close(self) -> concurrent.futures.Future[None]:
        """Close the connection.  Streams still running fail.  Returns
        :attr:`shutdown_future`."""
        impl = self._impl
        if impl is not None:
            impl.close()
        return self._shutdown_future

    @staticmethod
    def _generic_new(host_name: str, port: int, bootstrap: ClientBootstrap | None,
                     socket_options: SocketOptions | None,
                     tls_connection_options: TlsConnectionOptions | None,
                     proxy_options: HttpProxyOptions | None, *,
                     expected_version: HttpVersion | None = None,
                     **settings: Any) -> concurrent.futures.Future[Any]:
        from ._http import connect as _connect

        if not isinstance(host_name, str):
            raise TypeError("host_name must be a str")
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError("port must be an int")
        if proxy_options is not None and not isinstance(proxy_options, HttpProxyOptions):
            raise TypeError("proxy_options must be an HttpProxyOptions")
        if settings.get("manual_window_management") and settings.get("initial_window_size") is None:
            raise ValueError("initial_window_size is required when manual_window_management is True")
        return _connect.new_connection(
            host_name, port, bootstrap=bootstrap, socket_options=socket_options,
            tls_connection_options=tls_connection_options, proxy_options=proxy_options,
            expected_version=expected_version, **settings)


class HttpClientConnection(HttpClientConnectionBase):
    """An HTTP client connection (HTTP/1.1, or HTTP/2 when negotiated through ALPN).

    Make one with :meth:`new`.
    """

    @classmethod
    def new(cls,
            host_name: str,
            port: int,
            bootstrap: ClientBootstrap | None = None,
            socket_options: SocketOptions | None = None,
            tls_connection_options: TlsConnectionOptions | None = None,
            proxy_options: HttpProxyOptions | None = None,
            manual_window_management: bool = False,
            initial_window_size: int | None = None,
            read_buffer_capacity: int | None = None) -> concurrent.futures.Future[HttpClientConnection]:
        """Connect asynchronously.

        Args:
            host_name (str): host to connect to.
            port (int): port to connect to.
            bootstrap (Optional[ClientBootstrap]): client bootstrap (event loops and DNS);
                None uses the static default.
            socket_options (Optional[SocketOptions]): socket options; None uses defaults.
            tls_connection_options (Optional[TlsConnectionOptions]): TLS options; None
                connects over plain TCP.  With ALPN ``["h2", "http/1.1"]`` the server may
                pick HTTP/2, and the future then gives an :class:`Http2ClientConnection`.
            proxy_options (Optional[HttpProxyOptions]): connect through this proxy.
            manual_window_management (bool): when True, each stream's read window starts
                at ``initial_window_size`` and only grows through ``update_window``.
            initial_window_size (Optional[int]): initial read window in bytes (required
                with manual window management).
            read_buffer_capacity (Optional[int]): size of the read buffer in bytes.

        Returns:
            concurrent.futures.Future: the connection, or an exception.
        """
        return cls._generic_new(host_name, port, bootstrap, socket_options, tls_connection_options,
                                proxy_options, manual_window_management=manual_window_management,
                                initial_window_size=initial_window_size,
                                read_buffer_capacity=read_buffer_capacity)

    def request(self,
                request: HttpRequest,
                on_response: Callable[..., None] | None = None,
                on_body: Callable[..., None] | None = None) -> HttpClientStream:
        """Create a stream that will send ``request``; call :meth:`HttpClientStream.activate`
        to start it.

        Args:
            request (HttpRequest): the request.
            on_response: called as ``on_response(http_stream, status_code, headers, **kwargs)``
                for the final response and every informational (1xx) response.
            on_body: called as ``on_body(http_stream, chunk, **kwargs)`` for each piece of
                the response body.

        Returns:
            HttpClientStream:
        """
        return HttpClientStream(self, request, on_response, on_body)


class Http2ClientConnection(HttpClientConnectionBase):
    """An HTTP/2 client connection.  Make one with :meth:`new`."""

    @classmethod
    def new(cls,
            host_name: str,
            port: int,
            bootstrap: ClientBootstrap | None = None,
            socket_options: SocketOptions | None = None,
            tls_connection_options: TlsConnectionOptions | None = None,
            proxy_options: HttpProxyOptions | None = None,
            initial_settings: list[Http2Setting] | None = None,
            on_remote_settings_changed: Callable[[list[Http2Setting]], None] | None = None,
            manual_window_management: bool = False,
            initial_window_size: int | None = None,
            conn_manual_window_management: bool = False,
            conn_window_size_threshold: int | None = None,
            stream_window_size_threshold: int | None = None) -> concurrent.futures.Future[Http2ClientConnection]:
        """Connect asynchronously, speaking HTTP/2 (prior knowledge over TCP, or ALPN ``h2``
        over TLS; the future fails if the server picks another protocol).

        Args:
            host_name (str): host to connect to.
            port (int): port to connect to.
            bootstrap (Optional[ClientBootstrap]): client bootstrap; None uses the
                static default (as for :meth:`HttpClientConnection.new`).
            socket_options (Optional[SocketOptions]): socket options; None uses defaults.
            tls_connection_options (Optional[TlsConnectionOptions]): TLS options (with
                ALPN ``h2``); None speaks cleartext HTTP/2 with prior knowledge.
            proxy_options (Optional[HttpProxyOptions]): connect through this proxy.
            initial_settings (Optional[List[Http2Setting]]): settings sent in the
                connection preface.
            on_remote_settings_changed: called with the list of :class:`Http2Setting`
                each time the server's settings change.
            manual_window_management (bool): streams' windows only grow through
                ``update_window``.
            initial_window_size (Optional[int]): initial stream window.
            conn_manual_window_management (bool): the connection window only grows
                through :meth:`update_window`.
            conn_window_size_threshold (Optional[int]): automatic connection window
                updates are sent once this many bytes have been consumed.
            stream_window_size_threshold (Optional[int]): likewise for streams.

        Returns:
            concurrent.futures.Future: the connection, or an exception.
        """
        if initial_settings is not None:
            for s in initial_settings:
                if not isinstance(s, Http2Setting):
                    raise TypeError("initial_settings must be a list of Http2Setting")
        if on_remote_settings_changed is not None and not callable(on_remote_settings_changed):
            raise TypeError("on_remote_settings_changed must be callable")
        return cls._generic_new(host_name, port, bootstrap, socket_options, tls_connection_options,
                                proxy_options, expected_version=HttpVersion.Http2,
                                initial_settings=initial_settings,
                                on_remote_settings_changed=on_remote_settings_changed,
                                manual_window_management=manual_window_management,
                                initial_window_size=initial_window_size,
                                conn_manual_window_management=conn_manual_window_management,
                                conn_window_size_threshold=conn_window_size_threshold,
                                stream_window_size_threshold=stream_window_size_threshold)

    def request(self,
                request: HttpRequest,
                on_response: Callable[..., None] | None = None,
                on_body: Callable[..., None] | None = None,
                manual_write: bool = False) -> Http2ClientStream:
        """Create a stream for ``request``; call :meth:`Http2ClientStream.activate` to start it.

        Args:
            request (HttpRequest): the request (HTTP/1.1 style; ``Host`` becomes
                ``:authority``).
            on_response (Optional[Callable]): called as ``on_response(http_stream,
                status_code, headers, **kwargs)``, as for
                :meth:`HttpClientConnection.request`.
            on_body (Optional[Callable]): called as ``on_body(http_stream, chunk,
                **kwargs)`` for each piece of the response body.
            manual_write (bool): when True, the body is sent with
                :meth:`Http2ClientStream.write_data` instead of ``request.body_stream``.

        Returns:
            Http2ClientStream:
        """
        return Http2ClientStream(self, request, on_response, on_body, manual_write)

    def update_window(self, increment_size: int) -> None:
        """Grow the connection's flow-control window by ``increment_size`` bytes (only
        meaningful with ``conn_manual_window_management``)."""
        _check_increment(increment_size)
        impl = self._impl
        if impl is not None:
            impl.update_connection_window(increment_size)


def _check_increment(increment_size: int) -> None:
    if not isinstance(increment_size, int) or isinstance(increment_size, bool):
        raise TypeError("increment_size must be an int")
    if increment_size < 0:
        raise ValueError("increment_size must not be negative")


# ---------------------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------------------
class HttpStreamBase(NativeResource):
    """Common base of HTTP streams."""

    def __init__(self, connection: Any, on_body: Callable[..., None] | None = None) -> None:
        super().__init__()
        self._connection: HttpConnectionBase = connection
        self._completion_future: CrtFuture = CrtFuture()
        self._on_body_cb = on_body

    @property
    def connection(self) -> HttpConnectionBase:
        """HttpConnectionBase: the connection of this stream."""
        return self._connection

    @property
    def completion_future(self) -> concurrent.futures.Future[int]:
        """concurrent.futures.Future: completes when the exchange is over."""
        return self._completion_future

    def _on_body(self, chunk: bytes) -> None:
        if self._on_body_cb is not None:
            self._on_body_cb(http_stream=self, chunk=chunk)


class HttpClientStreamBase(HttpStreamBase):
    """Common base of client streams."""

    def _init_common(self, connection: HttpClientConnectionBase, request: HttpRequest,
                     on_response: Callable[..., None] | None, on_body: Callable[..., None] | None,
                     manual_write: bool = False) -> None:
        if not isinstance(connection, HttpClientConnectionBase):
            raise TypeError("connection must be an HTTP client connection")
        if not isinstance(request, HttpRequest):
            raise TypeError("request must be an HttpRequest")
        if on_response is not None and not callable(on_response):
            raise TypeError("on_response must be callable")
        if on_body is not None and not callable(on_body):
            raise TypeError("on_body must be callable")
        # HttpStreamBase.__init__, except that the completion future comes from the engine
        NativeResource.__init__(self)
        self._connection = connection
        self._on_body_cb = on_body
        self._on_response_cb = on_response
        self._response_status_code: int | None = None
        self._request: HttpRequest | None = request
        self._version = connection.version
        impl = connection._impl
        if impl is None:
            raise error("AWS_ERROR_HTTP_CONNECTION_CLOSED")
        self._impl = impl.new_stream(self, request, manual_write)
        make_future = getattr(self._impl, "make_future", None)
        if make_future is not None:
            # waiting on it runs this connection's pending callbacks in the waiting thread
            self._completion_future = make_future()
            if isinstance(self, Http2ClientStream):
                self._remote_end_stream_future = make_future()
        else:
            self._completion_future = CrtFuture()

    @property
    def version(self) -> HttpVersion:
        """HttpVersion: the protocol of this stream."""
        return self._version

    @property
    def response_status_code(self) -> int | None:
        """Optional[int]: the response's status code; None until the response arrives."""
        return self._response_status_code

    def _on_response(self, status_code: int, name_value_pairs: list[tuple[str, str]]) -> None:
        self._response_status_code = status_code
        if self._on_response_cb is not None:
            self._on_response_cb(http_stream=self, status_code=status_code, headers=name_value_pairs)

    def _on_complete(self, exc: BaseException | None) -> None:
        self._request = None
        if exc is None:
            self._completion_future.try_set_result(self._response_status_code)
        else:
            self._completion_future.try_set_exception(exc)

    def _on_h2_remote_end_stream(self) -> None:
        pass

    def update_window(self, increment_size: int) -> None:
        """Grow this stream's read window by ``increment_size`` bytes (with manual
        window management)."""
        _check_increment(increment_size)
        self._impl.update_window(increment_size)


class HttpClientStream(HttpClientStreamBase):
    """An HTTP/1.x request/response exchange.  Made by :meth:`HttpClientConnection.request`.

    Attributes:
        completion_future (concurrent.futures.Future): the response status code once
            the whole response has arrived, or the exception that ended the exchange.
    """

    def __init__(self,
                 connection: HttpClientConnection,
                 request: HttpRequest,
                 on_response: Callable[..., None] | None = None,
                 on_body: Callable[..., None] | None = None) -> None:
        self._init_common(connection, request, on_response, on_body)

    def activate(self) -> None:
        """Start sending the request.  No callback fires before this."""
        self._impl.activate()


class Http2ClientStream(HttpClientStreamBase):
    """An HTTP/2 request/response exchange.  Made by :meth:`Http2ClientConnection.request`."""

    def __init__(self,
                 connection: Http2ClientConnection,
                 request: HttpRequest,
                 on_response: Callable[..., None] | None = None,
                 on_body: Callable[..., None] | None = None,
                 manual_write: bool = False) -> None:
        self._remote_end_stream_future: CrtFuture = CrtFuture()
        self._init_common(connection, request, on_response, on_body, manual_write)

    @property
    def remote_end_stream_future(self) -> concurrent.futures.Future[None]:
        """concurrent.futures.Future: completes with None when the server ends its side of
        the stream (END_STREAM), or with an exception if the stream ends otherwise."""
        return self._remote_end_stream_future

    def _on_h2_remote_end_stream(self) -> None:
        self._remote_end_stream_future.try_set_result(None)

    def _on_complete(self, exc: BaseException | None) -> None:
        if not self._remote_end_stream_future.done():
            self._remote_end_stream_future.try_set_exception(
                exc if exc is not None else RuntimeError("the stream ended before the server sent END_STREAM"))
        super()._on_complete(exc)

    def activate(self) -> None:
        """Start sending the request.  No callback fires before this."""
        self._impl.activate()

    def write_data(self,
                   data_stream: InputStream | Any,
                   end_stream: bool = False) -> concurrent.futures.Future[None]:
        """Send a piece of the request body (streams made with ``manual_write=True``).

        Args:
            data_stream: an InputStream or file-like object, or None for no data.
            end_stream (bool): True if this is the last piece.

        Returns:
            concurrent.futures.Future: None once the data is written, or an exception.
        """
        body = wrap_stream(data_stream, allow_none=True)
        written: concurrent.futures.Future[None] = self._impl.write_data(body, bool(end_stream))
        return written


# ---------------------------------------------------------------------------------------
# messages and headers
# ---------------------------------------------------------------------------------------
class HttpMessageBase(NativeResource):
    """Common base of HTTP messages: headers and an optional body stream."""

    def __init__(self, binding: Any, headers: HttpHeaders,
                 body_stream: InputStream | Any | None = None) -> None:
        if not isinstance(headers, HttpHeaders):
            raise TypeError("headers must be an HttpHeaders")
        super().__init__()
        self._binding = binding
        self._headers = headers
        self._body_stream: Any = None
        if body_stream is not None:
            self.body_stream = body_stream

    @property
    def headers(self) -> HttpHeaders:
        """HttpHeaders: the message's headers."""
        return self._headers

    @property
    def body_stream(self) -> InputStream | None:
        """Optional[InputStream]: the body; set it to any InputStream or binary file-like."""
        return self._body_stream

    @body_stream.setter
    def body_stream(self, stream: InputStream | Any) -> None:
        self._body_stream = wrap_stream(stream)


class HttpRequest(HttpMessageBase):
    """An outgoing HTTP request.

    Args:
        method (str): request method, "GET" by default.
        path (str): path and query, "/" by default.
        headers (Optional[HttpHeaders]): headers; None makes an empty set.
        body_stream: optional body, an InputStream or binary file-like object.
    """

    def __init__(self,
                 method: str = 'GET',
                 path: str = '/',
                 headers: HttpHeaders | None = None,
                 body_stream: InputStream | Any | None = None) -> None:
        if headers is None:
            headers = HttpHeaders()
        super().__init__(None, headers, body_stream)
        self.method = method
        self.path = path

    @property
    def method(self) -> str:
        """str: the request method."""
        return self._method

    @method.setter
    def method(self, method: str) -> None:
        if not isinstance(method, str):
            raise TypeError("method must be a str")
        self._method = method

    @property
    def path(self) -> str:
        """str: the request path and query."""
        return self._path

    @path.setter
    def path(self, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        self._path = path

    def __repr__(self) -> str:
        return f"HttpRequest(method={self._method!r}, path={self._path!r})"


_OWS = " \t"  # HTTP optional whitespace, dropped around header values


class HttpHeaders(NativeResource):
    """An ordered collection of HTTP headers.  Names compare case-insensitively and may
    have several values.  Iterating gives ``(name, value)`` pairs in order.

    Args:
        name_value_pairs (Optional[List[Tuple[str, str]]]): initial pairs.
    """

    def __init__(self, name_value_pairs: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self._pairs: list[tuple[str, str]] = []
        if name_value_pairs:
            self.add_pairs(name_value_pairs)

    @staticmethod
    def _check(name: Any, value: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"header name must be a str, not {type(name).__name__}")
        if not isinstance(value, str):
            raise TypeError(f"header value must be a str, not {type(value).__name__}")

    def add(self, name: str, value: str) -> None:
        """Append a ``(name, value)`` pair.  Spaces and tabs around the value are
        dropped (HTTP's optional whitespace); the name is kept as given."""
        self._check(name, value)
        self._pairs.append((name, value.strip(_OWS)))

    def add_pairs(self, name_value_pairs: list[tuple[str, str]]) -> None:
        """Append each ``(name, value)`` pair of a list."""
        for pair in name_value_pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError("name_value_pairs must hold (name, value) tuples") from None
            self.add(name, value)

    def set(self, name: str, value: str) -> None:
        """Remove every value of ``name``, then append ``(name, value)`` (the value
        without surrounding spaces and tabs, as :meth:`add`)."""
        self._check(name, value)
        key = name.lower()
        self._pairs = [p for p in self._pairs if p[0].lower() != key]
        self._pairs.append((name, value.strip(_OWS)))

    def get_values(self, name: str) -> Iterator[str]:
        """Iterate over the values of ``name``, in order."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        key = name.lower()
        for n, v in list(self._pairs):
            if n.lower() == key:
                yield v

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default``."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        key = name.lower()
        for n, v in self._pairs:
            if n.lower() == key:
                return v
        return default

    def remove(self, name: str) -> None:
        """Remove every value of ``name``.  Raises KeyError if there is none."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        key = name.lower()
        kept = [p for p in self._pairs if p[0].lower() != key]
        if len(kept) == len(self._pairs):
            raise KeyError(f"HttpHeaders.remove(name): no header named {name!r}")
        self._pairs = kept

    def remove_value(self, name: str, value: str) -> None:
        """Remove the first ``(name, value)`` pair.  Raises ValueError if there is none."""
        self._check(name, value)
        key = name.lower()
        for i, (n, v) in enumerate(self._pairs):
            if v == value and n.lower() == key:
                del self._pairs[i]
                return
        raise ValueError(f"HttpHeaders.remove_value(name, value): {name!r} has no such value")

    def clear(self) -> None:
        """Remove every header."""
        self._pairs = []

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._pairs))

    def __len__(self) -> int:
        return len(self._pairs)

    def __str__(self) -> str:
        return f"{type(self).__name__}({self._pairs!r})"

    def __repr__(self) -> str:
        return self.__str__()


# ---------------------------------------------------------------------------------------
# proxies
# ---------------------------------------------------------------------------------------
class HttpProxyConnectionType(IntEnum):
    """How a connection uses its proxy."""

    Legacy = 0
    """Forwarding for plain-text connections, Tunneling for TLS ones."""

    Forwarding = 1
    """Send every request to the proxy with an absolute URI (no TLS to the origin)."""

    Tunneling = 2
    """Open a tunnel with CONNECT and talk to the origin through it."""


class HttpProxyAuthenticationType(IntEnum):
    """Authentication presented to a proxy."""

    Nothing = 0
    """No authentication."""

    Basic = 1
    """Username and password, sent with ``Proxy-Authorization: Basic``."""


class HttpProxyOptions:
    """Proxy settings for client connections.

    Args:
        host_name (str): the proxy's host.
        port (int): the proxy's port.
        tls_connection_options (Optional[TlsConnectionOptions]): TLS to the proxy itself
            (distinct from the TLS options used towards the origin).
        auth_type (HttpProxyAuthenticationType): authentication, none by default.
        auth_username (Optional[str]): user name for Basic authentication.
        auth_password (Optional[str]): password for Basic authentication.
        connection_type (HttpProxyConnectionType): how the proxy is used; Legacy by default.
    """

    def __init__(self,
                 host_name: str,
                 port: int,
                 tls_connection_options: TlsConnectionOptions | None = None,
                 auth_type: HttpProxyAuthenticationType = HttpProxyAuthenticationType.Nothing,
                 auth_username: str | None = None,
                 auth_password: str | None = None,
                 connection_type: HttpProxyConnectionType = HttpProxyConnectionType.Legacy) -> None:
        self.host_name = host_name
        self.port = port
        self.tls_connection_options = tls_connection_options
        self.auth_type = auth_type
        self.auth_username = auth_username
        self.auth_password = auth_password
        self.connection_type = connection_type

    def __repr__(self) -> str:
        return (f"HttpProxyOptions(host_name={self.host_name!r}, port={self.port!r}, "
                f"auth_type={self.auth_type!r}, auth_username={self.auth_username!r}, "
                f"auth_password={'***' if self.auth_password else None}, "
                f"connection_type={self.connection_type!r})")
