"""MQTT 3.1.1 client.

A :class:`Connection` talks to one broker.  :meth:`Connection.connect` opens it; once it
has succeeded, a lost connection is re-established automatically (exponential backoff
between ``reconnect_min_timeout_secs`` and ``reconnect_max_timeout_secs``) until
:meth:`Connection.disconnect`.  Operations return ``(future, packet_id)`` pairs; the
futures complete with small dicts.  QoS 1 publishes and subscriptions made while
offline are queued and sent after reconnecting.

Callbacks (connection lifecycle, received messages, the WebSocket handshake transform)
run on crtpy's callback workers, one at a time and in order, never on the network
thread: they may publish, subscribe or wait on futures.

The protocol work lives in ``crtpy._mqtt311`` (state machine) and ``crtpy._mqtt``
(packet codec).
"""
from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import NativeResource
from ._errors import error
from ._mqtt import codec as _codec
from ._mqtt311 import core as _core311
from .exceptions import AwsCrtError

if TYPE_CHECKING:
    from ._mqtt.listeners import ProtocolListener
    from ._mqtt311.adapter import Adapter
    from .aws_iot_metrics import AWSIoTMetrics
    from .http import HttpProxyOptions, HttpRequest
    from .io import SocketOptions

__all__ = [
    "Client",
    "ConnectReturnCode",
    "Connection",
    "OnConnectionClosedData",
    "OnConnectionFailureData",
    "OnConnectionSuccessData",
    "OperationStatisticsData",
    "QoS",
    "SubscribeError",
    "WebsocketHandshakeTransformArgs",
    "Will",
]


class QoS(IntEnum):
    """Quality of service of a message or subscription."""

    AT_MOST_ONCE = 0
    """Delivered at most once; no acknowledgement."""

    AT_LEAST_ONCE = 1
    """Delivered at least once, acknowledged with PUBACK."""

    EXACTLY_ONCE = 2
    """Delivered exactly once (four-packet handshake).  Subscriptions may request it;
    this client does not publish at this level."""

    def to_mqtt5(self):  # type: ignore[no-untyped-def]
        """The same level as a ``crtpy.mqtt5.QoS``."""
        from .mqtt5 import QoS as Mqtt5QoS

        return Mqtt5QoS(self.value)


def _qos_or_none(value: Any) -> QoS | None:
    try:
        return QoS(value)
    except ValueError:
        return None


class ConnectReturnCode(IntEnum):
    """The return code of a CONNACK (0 accepted, 1-5 refusals)."""

    ACCEPTED = 0
    """The server accepted the connection."""

    UNACCEPTABLE_PROTOCOL_VERSION = 1
    """The server does not speak the requested protocol level."""

    IDENTIFIER_REJECTED = 2
    """The client id is not allowed."""

    SERVER_UNAVAILABLE = 3
    """The MQTT service is not available."""

    BAD_USERNAME_OR_PASSWORD = 4
    """The username or password is malformed."""

    NOT_AUTHORIZED = 5
    """The client may not connect."""


class Will:
    """A message the server publishes on the client's behalf when the client
    disconnects without sending DISCONNECT.

    Args:
        topic (str): topic of the message.
        qos (QoS): its quality of service.
        payload (bytes): its content.
        retain (bool): whether the server retains it.
    """

    __slots__ = ("payload", "qos", "retain", "topic")

    def __init__(self, topic, qos, payload, retain):  # type: ignore[no-untyped-def]
        self.topic = topic
        self.qos = qos
        self.payload = payload
        self.retain = retain


@dataclass
class OnConnectionSuccessData:
    """Passed to ``on_connection_success``.

    Args:
        return_code (ConnectReturnCode): the CONNACK's return code.
        session_present (bool): whether the server resumed an existing session.
    """

    return_code: ConnectReturnCode = None  # type: ignore[assignment]
    session_present: bool = False


@dataclass
class OnConnectionFailureData:
    """Passed to ``on_connection_failure``.

    Args:
        error (AwsCrtError): why the connection attempt failed.
    """

    error: AwsCrtError = None  # type: ignore[assignment]


@dataclass
class OnConnectionClosedData:
    """Passed to ``on_connection_closed`` (no fields yet)."""


class Client(NativeResource):
    """Configuration shared by connections: the bootstrap (event loops, DNS) and an
    optional TLS context.

    Args:
        bootstrap (Optional[ClientBootstrap]): ``None`` uses the default static bootstrap.
        tls_ctx (Optional[ClientTlsContext]): TLS for every connection of this client;
            ``None`` means plain TCP.
    """

    __slots__ = ("_bootstrap", "tls_ctx")

    def __init__(self, bootstrap=None, tls_ctx=None):  # type: ignore[no-untyped-def]
        from .io import ClientBootstrap, ClientTlsContext

        if bootstrap is not None and not isinstance(bootstrap, ClientBootstrap):
            raise TypeError("bootstrap must be a ClientBootstrap or None")
        if tls_ctx is not None and not isinstance(tls_ctx, ClientTlsContext):
            raise TypeError("tls_ctx must be a ClientTlsContext or None")
        super().__init__()
        self._bootstrap = bootstrap  # None: the static default, looked up per connection
        self.tls_ctx = tls_ctx


@dataclass
class OperationStatisticsData:
    """Counts and sizes of a connection's operations.

    Args:
        incomplete_operation_count (int): operations not yet completed (queued or sent).
        incomplete_operation_size (int): their packet sizes, in bytes.
        unacked_operation_count (int): operations sent and waiting for an acknowledgement.
        unacked_operation_size (int): their packet sizes, in bytes.
    """

    incomplete_operation_count: int = 0
    incomplete_operation_size: int = 0
    unacked_operation_count: int = 0
    unacked_operation_size: int = 0


def _message_wrapper(callback: Callable[..., None]) -> Callable[..., None]:
    """Call ``callback`` with the keyword arguments it accepts: the full set, or only
    ``topic`` and ``payload`` for the older two-argument form."""
    sig = inspect.signature(callback)
    try:
        sig.bind(topic="t", payload=b"", dup=False, qos=QoS.AT_MOST_ONCE, retain=False)
        short = False
    except TypeError:
        sig.bind(topic="t", payload=b"")
        short = True

    if short:
        def wrapper(topic: str, payload: bytes, dup: bool, qos: int, retain: bool) -> None:
            callback(topic=topic, payload=payload)
    else:
        def wrapper(topic: str, payload: bytes, dup: bool, qos: int, retain: bool) -> None:
            callback(topic=topic, payload=payload, dup=dup, qos=QoS(qos), retain=retain)
    return wrapper


def _failed(exc: BaseException) -> Future[Any]:
    from ._runtime.futures import failed

    return failed(exc)


#: topic names that passed _check_topic (publishers reuse a few topics: checked once)
_GOOD_TOPICS: dict[str, None] = {}


def _check_topic(topic: Any, wildcards: bool) -> str:
    if not wildcards and topic.__class__ is str and topic in _GOOD_TOPICS:
        return topic
    if not isinstance(topic, str):
        raise TypeError("topic must be a str")
    b = topic.encode("utf-8", "surrogatepass")
    if not topic or len(b) > 65535 or _codec.check_utf8(topic):
        raise error("AWS_ERROR_MQTT_INVALID_TOPIC", f"invalid topic {topic!r}")
    if wildcards:
        from ._mqtt311.driver import topic_matches  # noqa: F401 - same rules module

        levels = topic.split("/")
        for i, level in enumerate(levels):
            if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
                raise error("AWS_ERROR_MQTT_INVALID_TOPIC", f"invalid topic filter {topic!r}")
    elif "+" in topic or "#" in topic:
        raise error("AWS_ERROR_MQTT_INVALID_TOPIC", f"wildcards are not allowed in a topic name: {topic!r}")
    else:
        if len(_GOOD_TOPICS) >= 1024:
            _GOOD_TOPICS.clear()
        _GOOD_TOPICS[topic] = None
    return topic


def _as_qos(qos: Any) -> QoS:
    if qos.__class__ is QoS:
        return qos
    from .mqtt5 import QoS as Mqtt5QoS

    if isinstance(qos, Mqtt5QoS):
        return QoS(int(qos))
    if not isinstance(qos, QoS):
        raise TypeError("qos must be a crtpy.mqtt.QoS")
    return qos


class Connection(NativeResource):
    """One MQTT 3.1.1 connection to a broker (and its session).

    Args:
        client (Client): bootstrap and TLS settings.
        host_name (str): server host.
        port (int): server port.
        client_id (str): the client identifier (unique per broker).
        clean_session (bool): start a new session on every connect; ``False`` resumes the
            server's stored session (subscriptions, queued QoS 1 messages) when it has one.
        on_connection_interrupted: ``fn(connection, error, **kwargs)``, called when a
            connection that had succeeded is lost; a reconnect follows automatically.
        on_connection_resumed: ``fn(connection, return_code, session_present, **kwargs)``,
            called when an automatic reconnect succeeds.
        reconnect_min_timeout_secs (int): first delay between reconnect attempts.
        reconnect_max_timeout_secs (int): the delay doubles up to this.
        keep_alive_secs (int): seconds between PINGREQs when otherwise idle (0 disables).
        ping_timeout_ms (int): how long to wait for a PINGRESP before the connection is
            considered lost.  Must be shorter than the keep-alive.
        protocol_operation_timeout_ms (int): when > 0, an operation whose acknowledgement
            does not arrive within this time fails with ``AWS_ERROR_MQTT_TIMEOUT``.
        will (Optional[Will]): the will message.
        username (Optional[str]): user name (metrics are appended unless disabled).
        password (Optional[str]): password.
        socket_options (Optional[SocketOptions]): connect timeout, keep-alive, family.
        use_websockets (bool): carry MQTT in WebSocket binary frames (path ``/mqtt``).
        websocket_proxy_options (Optional[HttpProxyOptions]): deprecated alias of
            ``proxy_options``.
        websocket_handshake_transform: ``fn(transform_args, **kwargs)`` that may change the
            WebSocket upgrade request (e.g. sign it) and must call
            ``transform_args.set_done()``.
        proxy_options (Optional[HttpProxyOptions]): connect through an HTTP proxy (CONNECT).
        on_connection_success: ``fn(connection, callback_data: OnConnectionSuccessData)``
            after each successful connect or reconnect.
        on_connection_failure: ``fn(connection, callback_data: OnConnectionFailureData)``
            after each failed connect or reconnect attempt.
        on_connection_closed: ``fn(connection, callback_data: OnConnectionClosedData)``
            after :meth:`disconnect` has closed the connection.
        disable_metrics (bool): do not append SDK metrics to the username.
        metrics (Optional[AWSIoTMetrics]): SDK metrics to append to the username.
    """

    def __init__(self,
                 client: Any,
                 host_name: str,
                 port: int,
                 client_id: str,
                 clean_session: bool = True,
                 on_connection_interrupted: Callable[..., None] | None = None,
                 on_connection_resumed: Callable[..., None] | None = None,
                 reconnect_min_timeout_secs: int = 5,
                 reconnect_max_timeout_secs: int = 60,
                 keep_alive_secs: int = 1200,
                 ping_timeout_ms: int = 3000,
                 protocol_operation_timeout_ms: int = 0,
                 will: Will | None = None,
                 username: str | None = None,
                 password: str | None = None,
                 socket_options: SocketOptions | None = None,
                 use_websockets: bool = False,
                 websocket_proxy_options: HttpProxyOptions | None = None,
                 websocket_handshake_transform: Callable[..., None] | None = None,
                 proxy_options: HttpProxyOptions | None = None,
                 on_connection_success: Callable[..., None] | None = None,
                 on_connection_failure: Callable[..., None] | None = None,
                 on_connection_closed: Callable[..., None] | None = None,
                 disable_metrics: bool = False,
                 metrics: AWSIoTMetrics | None = None,
                 ) -> None:
        from .http import HttpProxyOptions
        from .io import SocketOptions
        from .mqtt5 import Client as Mqtt5Client

        if not isinstance(client, (Client, Mqtt5Client)):
            raise TypeError("client must be a crtpy.mqtt.Client or a crtpy.mqtt5.Client")
        for name, fn in (("on_connection_interrupted", on_connection_interrupted),
                         ("on_connection_resumed", on_connection_resumed),
                         ("websocket_handshake_transform", websocket_handshake_transform),
                         ("on_connection_success", on_connection_success),
                         ("on_connection_failure", on_connection_failure),
                         ("on_connection_closed", on_connection_closed)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None")
        if will is not None and not isinstance(will, Will):
            raise TypeError("will must be a Will or None")
        if socket_options is not None and not isinstance(socket_options, SocketOptions):
            raise TypeError("socket_options must be a SocketOptions or None")
        for name, po in (("websocket_proxy_options", websocket_proxy_options), ("proxy_options", proxy_options)):
            if po is not None and not isinstance(po, HttpProxyOptions):
                raise TypeError(f"{name} must be an HttpProxyOptions or None")
        if reconnect_min_timeout_secs > reconnect_max_timeout_secs:
            raise ValueError("'reconnect_min_timeout_secs' cannot exceed 'reconnect_max_timeout_secs'")
        if keep_alive_secs * 1000 <= ping_timeout_ms:
            raise ValueError("'keep_alive_secs' duration must be longer than 'ping_timeout_ms'")
        if proxy_options and websocket_proxy_options:
            raise ValueError("'websocket_proxy_options' is deprecated in favour of 'proxy_options'; "
                             "set only one of them")
        super().__init__()
        from ._mqtt311.driver import Driver, SubTable

        self.client = client
        self._on_connection_interrupted_cb = on_connection_interrupted
        self._on_connection_resumed_cb = on_connection_resumed
        self._use_websockets = bool(use_websockets)
        self._ws_handshake_transform_cb = websocket_handshake_transform
        self._on_connection_success_cb = on_connection_success
        self._on_connection_failure_cb = on_connection_failure
        self._on_connection_closed_cb = on_connection_closed
        # These may be changed; they take effect at the next connect().
        self.client_id = client_id
        self.host_name = host_name
        self.port = port
        self.clean_session = clean_session
        self.reconnect_min_timeout_secs = reconnect_min_timeout_secs
        self.reconnect_max_timeout_secs = reconnect_max_timeout_secs
        self.keep_alive_secs = keep_alive_secs
        self.ping_timeout_ms = ping_timeout_ms
        self.protocol_operation_timeout_ms = protocol_operation_timeout_ms
        self.will = will
        self.username = username
        self.password = password
        self.socket_options = socket_options if socket_options else SocketOptions()
        self.proxy_options = proxy_options if proxy_options else websocket_proxy_options
        self._disable_metrics = bool(disable_metrics)
        self._metrics = metrics
        self._subs = SubTable()
        self._adapter: Adapter | None = None
        if isinstance(client, Mqtt5Client):
            # The 3.1.1 API over the MQTT 5 client: its driver does the protocol work.
            from ._mqtt311.adapter import Adapter

            self._adapter = Adapter(self, client._driver, self._subs)
            return
        self._driver = Driver(self, client._bootstrap, self._subs)
        # Only a running driver needs stopping, and its task keeps it alive: a weak
        # reference lets a stopped driver (with user callbacks) be collected with us.
        weakref.finalize(self, _terminate, weakref.ref(self._driver))

    def __repr__(self) -> str:
        return f"<crtpy.mqtt.Connection client_id={self.client_id!r} host={self.host_name!r} port={self.port!r}>"

    # -- lifecycle callbacks (run on the callback queue) -------------------------------
    def _crt_on_interrupted(self, exc: BaseException) -> None:
        if self._on_connection_interrupted_cb:
            self._on_connection_interrupted_cb(connection=self, error=exc)

    def _crt_on_resumed(self, session_present: bool) -> None:
        if self._on_connection_resumed_cb:
            self._on_connection_resumed_cb(connection=self, return_code=ConnectReturnCode.ACCEPTED,
                                           session_present=session_present)

    def _crt_on_success(self, session_present: bool) -> None:
        if self._on_connection_success_cb:
            self._on_connection_success_cb(connection=self, callback_data=OnConnectionSuccessData(
                return_code=ConnectReturnCode.ACCEPTED, session_present=session_present))

    def _crt_on_failure(self, exc: BaseException) -> None:
        if self._on_connection_failure_cb:
            self._on_connection_failure_cb(connection=self, callback_data=OnConnectionFailureData(error=exc))  # type: ignore[arg-type]

    def _crt_on_closed(self) -> None:
        if self._on_connection_closed_cb:
            self._on_connection_closed_cb(connection=self, callback_data=OnConnectionClosedData())

    # -- settings ---------------------------------------------------------------------
    def _build(self) -> tuple[Any, dict[str, Any]]:
        from ._mqtt import codec as c
        from ._mqtt311 import core as k
        from .aws_iot_metrics import _mqtt3_username

        if not isinstance(self.client_id, str):
            raise TypeError("client_id must be a str")
        if not isinstance(self.host_name, str) or not self.host_name:
            raise error("AWS_ERROR_INVALID_ARGUMENT", "host_name must be a non-empty str")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise error("AWS_ERROR_INVALID_ARGUMENT", "port must be an int in 0..65535")
        keep_alive = self.keep_alive_secs
        if not 0 <= keep_alive <= 65535:
            raise ValueError("keep_alive_secs must be in 0..65535")
        will = None
        if self.will is not None:
            w = self.will
            _check_topic(w.topic, wildcards=False)
            wq = _as_qos(w.qos)
            will = c.Publish(w.topic, _payload_bytes(w.payload), int(wq), bool(w.retain))
        username = _mqtt3_username(self.username, metrics=self._metrics, disable_metrics=self._disable_metrics,
                                   proxy_options=self.proxy_options, tls_ctx=self.client.tls_ctx)
        password: bytes | None = None
        if self.password is not None:
            password = self.password.encode("utf-8") if isinstance(self.password, str) else bytes(self.password)
        connect = c.Connect(4, self.client_id, bool(self.clean_session), int(keep_alive), username,
                            password, will)
        cfg = k.Config(connect, self.ping_timeout_ms / 1000.0, self.protocol_operation_timeout_ms / 1000.0)
        port = self.port
        tls = self.client.tls_ctx
        if not port:
            port = (443 if tls is not None else 80) if self._use_websockets else (8883 if tls is not None else 1883)
        settings = {
            "host": self.host_name, "port": port, "tls_ctx": tls, "bootstrap": self.client._bootstrap,  # type: ignore[union-attr]
            "socket_options": self.socket_options, "proxy": self.proxy_options,
            "websocket": self._use_websockets, "ws_transform": self._ws_handshake_transform_cb,
            "min_delay": float(self.reconnect_min_timeout_secs), "max_delay": float(self.reconnect_max_timeout_secs),
        }
        return k.Core(cfg), settings

    # -- operations -------------------------------------------------------------------
    def connect(self) -> Future[dict[str, Any]]:
        """Open the connection.

        Returns:
            concurrent.futures.Future: completes with ``{'session_present': bool}``, or
            with the error of the failed attempt (no automatic retry for the first
            connect).
        """
        from ._runtime.futures import CrtFuture

        fut = CrtFuture()
        try:
            self._check_fork()
            if self._adapter is not None:
                self._adapter.connect(fut, self._adapter_settings())
                return fut
            core, settings = self._build()
            self._driver.connect(fut, core, settings)
        except Exception as e:  # noqa: BLE001 - reported through the future
            fut.try_set_exception(e)
        return fut

    def reconnect(self) -> Future[dict[str, Any]]:
        """Deprecated: the connection reconnects by itself.  Same as :meth:`connect`."""
        return self.connect()

    def disconnect(self) -> Future[dict[str, Any]]:
        """Send DISCONNECT and close; stops reconnecting.

        Returns:
            concurrent.futures.Future: completes with ``{}`` once closed.
        """
        from ._runtime.futures import CrtFuture

        fut = CrtFuture()
        try:
            self._check_fork()
            (self._adapter or self._driver).disconnect(fut)
        except Exception as e:  # noqa: BLE001
            fut.try_set_exception(e)
        return fut

    def subscribe(self, topic: str, qos: QoS, callback: Callable[..., None] | None = None) -> tuple[Future[dict[str, Any]], int]:
        """Subscribe to a topic filter (wildcards allowed).

        ``callback(topic, payload, dup, qos, retain, **kwargs)`` (or the older
        ``callback(topic, payload)``) runs for each matching message, possibly before
        the SUBACK arrives.  May be called while offline.

        Returns:
            Tuple[concurrent.futures.Future, int]: the future completes with
            ``{'packet_id': int, 'topic': str, 'qos': QoS}`` (the granted QoS), or fails
            with :class:`SubscribeError` when the server rejects the subscription.
        """
        from ._mqtt import codec as c
        from ._mqtt311 import core as k

        try:
            if callback is not None and not callable(callback):
                raise TypeError("callback must be callable or None")
            self._check_fork()
            _check_topic(topic, wildcards=True)
            q = _as_qos(qos)
            wrapper = _message_wrapper(callback) if callback is not None else None
            if self._adapter is not None:
                return self._adapter.subscribe(topic, int(q), wrapper, QoS, SubscribeError)
            d = self._driver
            pid = d.core.allocate_pid()
            data = c.encode_subscribe(c.Subscribe(pid, [c.Subscription(topic, int(q))]), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e), 0
        d.add_subscription(topic, int(q), wrapper)

        def convert(granted: Any) -> Any:
            f, code = granted[0]
            qq = _qos_or_none(code) if code is not None else None
            if qq is None:
                raise SubscribeError(f)
            return {"packet_id": pid, "topic": f, "qos": qq}

        return d.submit(k.SUBSCRIBE, data, pid, int(q), [(topic, int(q))], convert), pid

    def on_message(self, callback: Callable[..., None] | None) -> None:
        """Set a callback for every received message (``None`` removes it), with the
        arguments described in :meth:`subscribe`."""
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        self._subs.on_any = _message_wrapper(callback) if callback is not None else None

    def unsubscribe(self, topic: str) -> tuple[Future[dict[str, Any]], int]:
        """Unsubscribe from a topic filter.

        Returns:
            Tuple[concurrent.futures.Future, int]: the future completes with
            ``{'packet_id': int}`` when the UNSUBACK arrives.
        """
        from ._mqtt import codec as c
        from ._mqtt311 import core as k

        try:
            self._check_fork()
            _check_topic(topic, wildcards=True)
            if self._adapter is not None:
                return self._adapter.unsubscribe(topic)
            d = self._driver
            pid = d.core.allocate_pid()
            data = c.encode_unsubscribe(c.Unsubscribe(pid, [topic]), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e), 0
        return d.submit(k.UNSUBSCRIBE, data, pid, 0, [topic], lambda _r: {"packet_id": pid}), pid

    def resubscribe_existing_topics(self) -> tuple[Future[dict[str, Any]], int | None]:
        """Subscribe again, in one SUBSCRIBE, to every topic filter of this connection
        (useful after resuming without a session).

        Returns:
            Tuple[concurrent.futures.Future, int]: the future completes with
            ``{'packet_id': int or None, 'topics': [(topic, QoS or None), ...]}``; with no
            subscriptions ``packet_id`` is None and ``topics`` empty.
        """
        from ._mqtt import codec as c
        from ._mqtt311 import core as k
        from ._runtime.futures import completed

        try:
            self._check_fork()
            if self._adapter is not None:
                return self._adapter.resubscribe(QoS)
            d = self._driver
            subs = d.subscriptions()
            if not subs:
                return completed({"packet_id": None, "topics": []}), None
            pid = d.core.allocate_pid()
            data = c.encode_subscribe(c.Subscribe(pid, [c.Subscription(f, q) for f, q in subs]), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e), 0

        def convert(granted: Any) -> Any:
            return {"packet_id": pid,
                    "topics": [(f, _qos_or_none(code) if code is not None else None) for f, code in granted]}

        return d.submit(k.SUBSCRIBE, data, pid, 1, subs, convert), pid

    def publish(self, topic: str, payload: str | bytes | bytearray, qos: QoS,
                retain: bool = False) -> tuple[Future[dict[str, Any]], int]:
        """Publish a message.

        QoS 0 completes once written (and fails with ``AWS_ERROR_MQTT_NOT_CONNECTED``
        while offline); QoS 1 completes on PUBACK and is queued while offline.

        Returns:
            Tuple[concurrent.futures.Future, int]: the future completes with
            ``{'packet_id': int}``.
        """
        c = _codec
        try:
            self._check_fork()
            _check_topic(topic, wildcards=False)
            q = _as_qos(qos)
            if q == QoS.EXACTLY_ONCE:
                raise ValueError("publishing at QoS 2 (EXACTLY_ONCE) is not supported")
            body = _payload_bytes(payload)
            if self._adapter is not None:
                return self._adapter.publish(topic, body, int(q), bool(retain))
            d = self._driver
            pid = d.core.allocate_pid()
            data = c.encode_publish(c.Publish(topic, body, int(q), bool(retain), False, pid if q else 0), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e), 0
        return d.submit(_core311.PUBLISH, data, pid, int(q), None, _publish_result(pid)), pid

    def get_stats(self) -> OperationStatisticsData:
        """Counts and sizes of the operations not yet completed."""
        self._check_fork()
        return OperationStatisticsData(*(self._adapter or self._driver).get_stats())

    # -- private interface for crtpy's own components (request-response) ---------------
    def _add_listener(self, sink: ProtocolListener) -> None:
        """Register an internal listener (see ``crtpy._mqtt.listeners``)."""
        (self._adapter or self._driver)._add_listener(sink)

    def _remove_listener(self, sink: ProtocolListener) -> None:
        (self._adapter or self._driver)._remove_listener(sink)

    def _is_connected(self) -> bool:
        return bool((self._adapter or self._driver)._is_connected())

    def _loop_thread(self) -> Any:
        return self._adapter.d.loop_thread if self._adapter is not None else self._driver.loop_thread

    def _subscribe_untracked(self, topic: str, qos: QoS) -> Future[None]:
        """SUBSCRIBE without registering a message callback or touching the
        connection's subscription table (the user's callback on the same filter stays).
        Completes with ``None`` or fails with :class:`SubscribeError`."""
        from ._mqtt import codec as c
        from ._mqtt311 import core as k

        try:
            self._check_fork()
            _check_topic(topic, wildcards=True)
            q = int(_as_qos(qos))
            if self._adapter is not None:
                def convert5(suback: Any) -> Any:
                    codes = suback.reason_codes
                    if not codes or codes[0] >= 0x80:
                        raise SubscribeError(topic)
                    return None

                return self._adapter._submit(c.Subscribe(0, [c.Subscription(topic, q)], {}), convert5)
            d = self._driver
            pid = d.core.allocate_pid()
            data = c.encode_subscribe(c.Subscribe(pid, [c.Subscription(topic, q)]), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e)

        def convert(granted: Any) -> Any:
            if granted[0][1] is None:
                raise SubscribeError(topic)
            return None

        return d.submit(k.SUBSCRIBE, data, pid, q, [(topic, q)], convert)

    def _unsubscribe_untracked(self, topic: str) -> Future[None]:
        """UNSUBSCRIBE without touching the connection's subscription table."""
        from ._mqtt import codec as c
        from ._mqtt311 import core as k

        try:
            self._check_fork()
            _check_topic(topic, wildcards=True)
            if self._adapter is not None:
                return self._adapter._submit(c.Unsubscribe(0, [topic], {}), lambda _r: None)
            d = self._driver
            pid = d.core.allocate_pid()
            data = c.encode_unsubscribe(c.Unsubscribe(pid, [topic]), 4)
        except Exception as e:  # noqa: BLE001
            return _failed(e)
        return d.submit(k.UNSUBSCRIBE, data, pid, 0, [], lambda _r: None)

    def _adapter_settings(self) -> dict[str, Any]:
        """The settings a connection over an MQTT 5 client applies to that client at
        connect(): client id, keep-alive, ping timeout and clean session.  Host, port,
        TLS, proxy, WebSocket, will, credentials and reconnect delays stay the MQTT 5
        client's."""
        if not isinstance(self.client_id, str):
            raise TypeError("client_id must be a str")
        keep_alive = self.keep_alive_secs
        if isinstance(keep_alive, bool) or not isinstance(keep_alive, int) or not 0 <= keep_alive <= 65535:
            raise ValueError("keep_alive_secs must be in 0..65535")
        return {"client_id": self.client_id, "keep_alive": keep_alive,
                "ping_timeout": self.ping_timeout_ms / 1000.0, "clean_session": bool(self.clean_session)}


def _terminate(driver_ref: Any) -> None:
    driver = driver_ref()
    if driver is not None:
        driver.terminate()


def _publish_result(pid: int) -> Callable[[Any], dict[str, int]]:
    return lambda _r: {"packet_id": pid}


def _payload_bytes(payload: Any) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be str, bytes or bytearray, not {type(payload).__name__}")


class WebsocketHandshakeTransformArgs:
    """What a ``websocket_handshake_transform`` callback receives.

    The callback may change ``http_request`` (for example sign it for AWS IoT Core) and
    must then call :meth:`set_done`, from any thread, passing an exception to abandon
    the connection attempt.

    Attributes:
        mqtt_connection (Connection): the connection being opened.
        http_request (HttpRequest): the upgrade request (``GET /mqtt``, subprotocol ``mqtt``).
    """

    def __init__(self, mqtt_connection: Connection, http_request: HttpRequest, done_future: Future[None]) -> None:
        self.mqtt_connection = mqtt_connection
        self.http_request = http_request
        self._done_future = done_future

    def set_done(self, exception: BaseException | None = None) -> None:
        """Finish the transform; an exception cancels the handshake."""
        if exception is None:
            self._done_future.set_result(None)
        else:
            self._done_future.set_exception(exception)


class SubscribeError(Exception):
    """The server rejected a subscription (SUBACK failure code)."""
