"""MQTT 5 client.

A :class:`Client` keeps one connection to a broker alive (reconnecting with backoff after
failures) from :meth:`Client.start` until :meth:`Client.stop`.  Operations
(:meth:`Client.publish`, :meth:`Client.subscribe`, :meth:`Client.unsubscribe`) return
``concurrent.futures.Future`` objects.  Lifecycle events and received messages are
reported through the callbacks of :class:`ClientOptions`; they run on crtpy's callback
workers, never on the network thread, so they may call back into the client.

The protocol work (packet codec, client state machine) lives in ``crtpy._mqtt``.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum
from inspect import signature
from typing import TYPE_CHECKING, Any

from . import NativeResource

if TYPE_CHECKING:
    from .aws_iot_metrics import AWSIoTMetrics
    from .http import HttpProxyOptions, HttpRequest
    from .io import ClientBootstrap, ClientTlsContext, ExponentialBackoffJitterMode, SocketOptions
    from .mqtt import Connection

__all__ = [
    "Client",
    "ClientOperationQueueBehaviorType",
    "ClientOptions",
    "ClientSessionBehaviorType",
    "ConnackPacket",
    "ConnectPacket",
    "ConnectReasonCode",
    "DisconnectPacket",
    "DisconnectReasonCode",
    "ExtendedValidationAndFlowControlOptions",
    "InboundTopicAliasBehaviorType",
    "LifecycleAttemptingConnectData",
    "LifecycleConnectFailureData",
    "LifecycleConnectSuccessData",
    "LifecycleDisconnectData",
    "LifecycleStoppedData",
    "NegotiatedSettings",
    "OperationStatisticsData",
    "OutboundTopicAliasBehaviorType",
    "PayloadFormatIndicator",
    "PubackPacket",
    "PubackReasonCode",
    "PublishAcknowledgementControlHandle",
    "PublishCompletionData",
    "PublishPacket",
    "PublishReceivedData",
    "QoS",
    "RetainAndHandlingType",
    "RetainHandlingType",
    "SubackPacket",
    "SubackReasonCode",
    "SubscribePacket",
    "Subscription",
    "TopicAliasingOptions",
    "UnsubackPacket",
    "UnsubackReasonCode",
    "UnsubscribePacket",
    "UserProperty",
    "WebsocketHandshakeTransformArgs",
]


# -- enums -------------------------------------------------------------------------------
class QoS(IntEnum):
    """Quality of service of a PUBLISH or of a subscription (MQTT 5 section 4.3)."""

    AT_MOST_ONCE = 0
    """Delivered at most once: no acknowledgement."""
    AT_LEAST_ONCE = 1
    """Delivered at least once: acknowledged by a PUBACK."""
    EXACTLY_ONCE = 2
    """Delivered exactly once (four-packet handshake).  This client does not publish at
    QoS 2; it may be requested for subscriptions."""

    def to_mqtt3(self):  # type: ignore[no-untyped-def]
        """The same level as a ``crtpy.mqtt.QoS``."""
        from .mqtt import QoS as Mqtt3QoS

        return Mqtt3QoS(self.value)


class ConnectReasonCode(IntEnum):
    """Reason code of a CONNACK: 0 is success, 128 and above are refusals."""

    SUCCESS = 0
    UNSPECIFIED_ERROR = 128
    MALFORMED_PACKET = 129
    PROTOCOL_ERROR = 130
    IMPLEMENTATION_SPECIFIC_ERROR = 131
    UNSUPPORTED_PROTOCOL_VERSION = 132
    CLIENT_IDENTIFIER_NOT_VALID = 133
    BAD_USERNAME_OR_PASSWORD = 134
    NOT_AUTHORIZED = 135
    SERVER_UNAVAILABLE = 136
    SERVER_BUSY = 137
    BANNED = 138
    BAD_AUTHENTICATION_METHOD = 140
    TOPIC_NAME_INVALID = 144
    PACKET_TOO_LARGE = 149
    QUOTA_EXCEEDED = 151
    PAYLOAD_FORMAT_INVALID = 153
    RETAIN_NOT_SUPPORTED = 154
    QOS_NOT_SUPPORTED = 155
    USE_ANOTHER_SERVER = 156
    SERVER_MOVED = 157
    CONNECTION_RATE_EXCEEDED = 159


class DisconnectReasonCode(IntEnum):
    """Reason code of a DISCONNECT, sent by either side."""

    NORMAL_DISCONNECTION = 0
    DISCONNECT_WITH_WILL_MESSAGE = 4
    UNSPECIFIED_ERROR = 128
    MALFORMED_PACKET = 129
    PROTOCOL_ERROR = 130
    IMPLEMENTATION_SPECIFIC_ERROR = 131
    NOT_AUTHORIZED = 135
    SERVER_BUSY = 137
    SERVER_SHUTTING_DOWN = 139
    KEEP_ALIVE_TIMEOUT = 141
    SESSION_TAKEN_OVER = 142
    TOPIC_FILTER_INVALID = 143
    TOPIC_NAME_INVALID = 144
    RECEIVE_MAXIMUM_EXCEEDED = 147
    TOPIC_ALIAS_INVALID = 148
    PACKET_TOO_LARGE = 149
    MESSAGE_RATE_TOO_HIGH = 150
    QUOTA_EXCEEDED = 151
    ADMINISTRATIVE_ACTION = 152
    PAYLOAD_FORMAT_INVALID = 153
    RETAIN_NOT_SUPPORTED = 154
    QOS_NOT_SUPPORTED = 155
    USE_ANOTHER_SERVER = 156
    SERVER_MOVED = 157
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 158
    CONNECTION_RATE_EXCEEDED = 159
    MAXIMUM_CONNECT_TIME = 160
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 161
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 162


class PubackReasonCode(IntEnum):
    """Reason code of a PUBACK (the broker's answer to a QoS 1 PUBLISH)."""

    SUCCESS = 0
    NO_MATCHING_SUBSCRIBERS = 16
    UNSPECIFIED_ERROR = 128
    IMPLEMENTATION_SPECIFIC_ERROR = 131
    NOT_AUTHORIZED = 135
    TOPIC_NAME_INVALID = 144
    PACKET_IDENTIFIER_IN_USE = 145
    QUOTA_EXCEEDED = 151
    PAYLOAD_FORMAT_INVALID = 153


class SubackReasonCode(IntEnum):
    """Per-filter result of a SUBSCRIBE: the granted QoS, or a failure (128 and above)."""

    GRANTED_QOS_0 = 0
    GRANTED_QOS_1 = 1
    GRANTED_QOS_2 = 2
    UNSPECIFIED_ERROR = 128
    IMPLEMENTATION_SPECIFIC_ERROR = 131
    NOT_AUTHORIZED = 135
    TOPIC_FILTER_INVALID = 143
    PACKET_IDENTIFIER_IN_USE = 145
    QUOTA_EXCEEDED = 151
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 158
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 161
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 162


class UnsubackReasonCode(IntEnum):
    """Per-filter result of an UNSUBSCRIBE."""

    SUCCESS = 0
    NO_SUBSCRIPTION_EXISTED = 17
    UNSPECIFIED_ERROR = 128
    IMPLEMENTATION_SPECIFIC_ERROR = 131
    NOT_AUTHORIZED = 135
    TOPIC_FILTER_INVALID = 143
    PACKET_IDENTIFIER_IN_USE = 145


class ClientSessionBehaviorType(IntEnum):
    """Whether the client asks the broker to resume a session when it connects."""

    DEFAULT = 0
    """Same as CLEAN."""
    CLEAN = 1
    """Every connection starts a new session."""
    REJOIN_POST_SUCCESS = 2
    """Start clean the first time, then resume the session on every reconnect (needs a
    non-zero session expiry interval)."""
    REJOIN_ALWAYS = 3
    """Ask to resume a session on every connection, the first one included."""


class PayloadFormatIndicator(IntEnum):
    """What the payload of a PUBLISH is declared to be."""

    AWS_MQTT5_PFI_BYTES = 0
    """Unspecified bytes."""
    AWS_MQTT5_PFI_UTF8 = 1
    """UTF-8 text."""


class RetainHandlingType(IntEnum):
    """When the broker sends retained messages for a new subscription."""

    SEND_ON_SUBSCRIBE = 0
    """Always, at each SUBSCRIBE."""
    SEND_ON_SUBSCRIBE_IF_NEW = 1
    """Only if the subscription did not already exist."""
    DONT_SEND = 2
    """Never."""


class RetainAndHandlingType(IntEnum):
    """Old name of :class:`RetainHandlingType` (deprecated)."""

    SEND_ON_SUBSCRIBE = 0
    SEND_ON_SUBSCRIBE_IF_NEW = 1
    DONT_SEND = 2


class ExtendedValidationAndFlowControlOptions(IntEnum):
    """Extra checks and throttles beyond the MQTT 5 specification."""

    NONE = 0
    """Only the checks the specification requires."""
    AWS_IOT_CORE_DEFAULTS = 1
    """Also enforce AWS IoT Core's limits: at most 8 filters per SUBSCRIBE, topics of at
    most 256 bytes and 8 levels, client ids of at most 128 bytes."""


class ClientOperationQueueBehaviorType(IntEnum):
    """What happens to queued operations when the connection is lost, and to new
    operations while the client is offline."""

    DEFAULT = 0
    """Same as FAIL_QOS0_PUBLISH_ON_DISCONNECT."""
    FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT = 1
    """Keep QoS 1 publishes; fail QoS 0 publishes, subscribes and unsubscribes."""
    FAIL_QOS0_PUBLISH_ON_DISCONNECT = 2
    """Fail QoS 0 publishes; keep everything else."""
    FAIL_ALL_ON_DISCONNECT = 3
    """Fail everything except unacknowledged QoS 1 publishes (which the protocol
    requires to be sent again)."""


@dataclass
class UserProperty:
    """A name/value pair of strings carried by a packet."""

    name: str | None = None
    value: str | None = None


class OutboundTopicAliasBehaviorType(IntEnum):
    """How the client uses topic aliases on the PUBLISH packets it sends."""

    DEFAULT = 0
    """Same as DISABLED."""
    MANUAL = 1
    """Use the ``topic_alias`` each PublishPacket sets."""
    LRU = 2
    """The client assigns aliases itself, reusing the least recently used."""
    DISABLED = 3
    """Never send topic aliases."""


class InboundTopicAliasBehaviorType(IntEnum):
    """Whether the broker may use topic aliases on the PUBLISH packets it sends."""

    DEFAULT = 0
    """Same as DISABLED."""
    ENABLED = 1
    """Allow them (up to ``inbound_cache_max_size``)."""
    DISABLED = 2
    """Do not allow them."""


@dataclass
class TopicAliasingOptions:
    """Topic alias settings in both directions."""

    outbound_behavior: OutboundTopicAliasBehaviorType | None = None
    outbound_cache_max_size: int | None = None
    inbound_behavior: InboundTopicAliasBehaviorType | None = None
    inbound_cache_max_size: int | None = None


@dataclass
class NegotiatedSettings:
    """Values in effect for a connection, from the CONNECT the client sent and the
    CONNACK the broker answered."""

    maximum_qos: QoS | None = None
    session_expiry_interval_sec: int | None = None
    receive_maximum_from_server: int | None = None
    maximum_packet_size_to_server: int | None = None
    topic_alias_maximum_to_server: int | None = None
    topic_alias_maximum_to_client: int | None = None
    server_keep_alive_sec: int | None = None
    retain_available: bool | None = None
    wildcard_subscriptions_available: bool | None = None
    subscription_identifiers_available: bool | None = None
    shared_subscriptions_available: bool | None = None
    rejoined_session: bool | None = None
    client_id: str | None = None


@dataclass
class ConnackPacket:
    """A CONNACK received from the broker; fields the broker left out are None."""

    session_present: bool | None = None
    reason_code: ConnectReasonCode | None = None
    session_expiry_interval_sec: int | None = None
    receive_maximum: int | None = None
    maximum_qos: QoS | None = None
    retain_available: bool | None = None
    maximum_packet_size: int | None = None
    assigned_client_identifier: str | None = None
    topic_alias_maximum: int | None = None
    reason_string: str | None = None
    user_properties: Sequence[UserProperty] | None = None
    wildcard_subscriptions_available: bool | None = None
    subscription_identifiers_available: bool | None = None
    shared_subscription_available: bool | None = None
    server_keep_alive_sec: int | None = None
    response_information: str | None = None
    server_reference: str | None = None

    @property
    def server_keep_alive(self) -> int | None:
        """Old name of ``server_keep_alive_sec``."""
        return self.server_keep_alive_sec

    @server_keep_alive.setter
    def server_keep_alive(self, value: int | None) -> None:
        self.server_keep_alive_sec = value


@dataclass
class DisconnectPacket:
    """A DISCONNECT, sent by :meth:`Client.stop` or received from the broker."""

    reason_code: DisconnectReasonCode = DisconnectReasonCode.NORMAL_DISCONNECTION
    session_expiry_interval_sec: int | None = None
    reason_string: str | None = None
    user_properties: Sequence[UserProperty] | None = None
    server_reference: str | None = None


@dataclass
class Subscription:
    """One topic filter of a SUBSCRIBE, with its options."""

    topic_filter: str
    qos: QoS = QoS.AT_MOST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling_type: RetainHandlingType = RetainHandlingType.SEND_ON_SUBSCRIBE


@dataclass
class SubscribePacket:
    """A SUBSCRIBE: one or more subscriptions, an optional subscription identifier that
    the broker echoes on matching messages, and user properties."""

    subscriptions: Sequence[Subscription]
    subscription_identifier: int | None = None
    user_properties: Sequence[UserProperty] | None = None


@dataclass
class SubackPacket:
    """The broker's answer to a SUBSCRIBE: one reason code per subscription."""

    reason_string: str | None = None
    user_properties: Sequence[UserProperty] | None = None
    reason_codes: Sequence[SubackReasonCode] | None = None


@dataclass
class UnsubscribePacket:
    """An UNSUBSCRIBE of one or more topic filters."""

    topic_filters: Sequence[str]
    user_properties: Sequence[UserProperty] | None = None


@dataclass
class UnsubackPacket:
    """The broker's answer to an UNSUBSCRIBE: one reason code per topic filter."""

    reason_string: str | None = None
    user_properties: Sequence[UserProperty] | None = None
    reason_codes: Sequence[UnsubackReasonCode] | None = None


@dataclass
class PublishPacket:
    """A PUBLISH, sent with :meth:`Client.publish` or received by the publish callback.

    ``payload`` may be bytes-like or str (sent as UTF-8).  ``correlation_data_bytes``
    takes precedence over the older ``correlation_data`` when sending; on received
    messages ``correlation_data_bytes`` holds the bytes and ``correlation_data`` their
    UTF-8 text when they decode.  ``subscription_identifiers`` is only filled on received
    messages.  ``topic_alias`` is only used with the MANUAL outbound alias behaviour.
    """

    payload: Any = ""
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    topic: str = ""
    payload_format_indicator: PayloadFormatIndicator | None = None
    message_expiry_interval_sec: int | None = None
    topic_alias: int | None = None
    response_topic: str | None = None
    correlation_data_bytes: bytes | str | None = None
    correlation_data: bytes | str | None = None
    subscription_identifiers: Sequence[int] | None = None
    content_type: str | None = None
    user_properties: Sequence[UserProperty] | None = None


@dataclass
class PubackPacket:
    """The broker's answer to a QoS 1 PUBLISH."""

    reason_code: PubackReasonCode | None = None
    reason_string: str | None = None
    user_properties: Sequence[UserProperty] | None = None


@dataclass
class ConnectPacket:
    """The CONNECT the client sends at each connection attempt.  ``will`` is a
    PublishPacket the broker publishes if the connection ends abnormally."""

    keep_alive_interval_sec: int | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    session_expiry_interval_sec: int | None = None
    request_response_information: bool | None = None
    request_problem_information: bool | None = None
    receive_maximum: int | None = None
    maximum_packet_size: int | None = None
    will_delay_interval_sec: int | None = None
    will: PublishPacket | None = None
    user_properties: Sequence[UserProperty] | None = None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'<redacted>' if k == 'password' and v is not None else repr(v)}"
            for k, v in self.__dict__.items())
        return f"ConnectPacket({shown})"


class WebsocketHandshakeTransformArgs:
    """What a ``websocket_handshake_transform`` callback receives.

    The callback may change ``http_request`` (for example sign it) and must then call
    :meth:`set_done`, with an exception to abandon the connection attempt.  It may do so
    later, from any thread.
    """

    def __init__(self, client: Client, http_request: HttpRequest, done_future: Future[None]) -> None:
        self.client = client
        self.http_request = http_request
        self._done_future = done_future

    def set_done(self, exception: BaseException | None = None) -> None:
        """Finish the transform; an exception cancels the handshake."""
        if exception is None:
            self._done_future.set_result(None)
        else:
            self._done_future.set_exception(exception)


class PublishAcknowledgementControlHandle:
    """Token for sending the PUBACK of a received QoS 1 message yourself, with
    :meth:`Client.invoke_publish_acknowledgement`."""

    def __init__(self, control_id: int) -> None:
        self._control_id = control_id


@dataclass
class PublishReceivedData:
    """What the publish callback receives.

    For QoS 1 messages ``acquire_publish_acknowledgement_control`` is a function that,
    called during the callback (once), stops the automatic PUBACK and returns a
    :class:`PublishAcknowledgementControlHandle`.  It is None for QoS 0 messages.
    """

    publish_packet: PublishPacket | None = None
    acquire_publish_acknowledgement_control: Callable[[], PublishAcknowledgementControlHandle] | None = None


@dataclass
class OperationStatisticsData:
    """Counts and sizes (bytes) of the client's incomplete and unacknowledged operations."""

    incomplete_operation_count: int = 0
    incomplete_operation_size: int = 0
    unacked_operation_count: int = 0
    unacked_operation_size: int = 0


@dataclass
class LifecycleStoppedData:
    """The client has stopped (after :meth:`Client.stop`)."""


@dataclass
class LifecycleAttemptingConnectData:
    """The client is starting a connection attempt."""


@dataclass
class LifecycleConnectSuccessData:
    """A connection attempt succeeded."""

    connack_packet: ConnackPacket | None = None
    negotiated_settings: NegotiatedSettings | None = None


@dataclass
class LifecycleConnectFailureData:
    """A connection attempt failed; ``connack_packet`` is set when the broker refused."""

    connack_packet: ConnackPacket | None = None
    exception: Exception | None = None


@dataclass
class LifecycleDisconnectData:
    """An established connection ended; ``disconnect_packet`` is set when the broker
    sent a DISCONNECT."""

    disconnect_packet: DisconnectPacket | None = None
    exception: Exception | None = None


@dataclass
class PublishCompletionData:
    """Result of :meth:`Client.publish`: ``puback`` is the broker's PUBACK for QoS 1
    (an empty PubackPacket for QoS 0)."""

    puback: PubackPacket | None = None


@dataclass
class ClientOptions:
    """Configuration of a :class:`Client`.  None means the default:

    port 1883 (8883 with TLS, 443 with WebSockets over TLS, 80 without), the static
    default bootstrap, default socket options, keep-alive 1200 s, reconnect delays of
    1 s to 120 s reset after 30 s connected, ping timeout 30 s, CONNACK timeout 20 s, no
    operation acknowledgement timeout, clean sessions, FAIL_QOS0_PUBLISH_ON_DISCONNECT,
    topic aliases disabled both ways.
    """

    host_name: str
    port: int | None = None
    bootstrap: ClientBootstrap | None = None
    socket_options: SocketOptions | None = None
    tls_ctx: ClientTlsContext | None = None
    http_proxy_options: HttpProxyOptions | None = None
    websocket_handshake_transform: Callable[[WebsocketHandshakeTransformArgs], None] | None = None
    connect_options: ConnectPacket | None = None
    session_behavior: ClientSessionBehaviorType | None = None
    extended_validation_and_flow_control_options: ExtendedValidationAndFlowControlOptions | None = None
    offline_queue_behavior: ClientOperationQueueBehaviorType | None = None
    retry_jitter_mode: ExponentialBackoffJitterMode | None = None
    min_reconnect_delay_ms: int | None = None
    max_reconnect_delay_ms: int | None = None
    min_connected_time_to_reset_reconnect_delay_ms: int | None = None
    ping_timeout_ms: int | None = None
    connack_timeout_ms: int | None = None
    ack_timeout_sec: int | None = None
    topic_aliasing_options: TopicAliasingOptions | None = None
    on_publish_callback_fn: Callable[[PublishReceivedData], None] | None = None
    on_lifecycle_event_stopped_fn: Callable[[LifecycleStoppedData], None] | None = None
    on_lifecycle_event_attempting_connect_fn: Callable[[LifecycleAttemptingConnectData], None] | None = None
    on_lifecycle_event_connection_success_fn: Callable[[LifecycleConnectSuccessData], None] | None = None
    on_lifecycle_event_connection_failure_fn: Callable[[LifecycleConnectFailureData], None] | None = None
    on_lifecycle_event_disconnection_fn: Callable[[LifecycleDisconnectData], None] | None = None
    disable_metrics: bool = False
    metrics: AWSIoTMetrics | None = None


def _check_callback(fn: Any, what: str) -> Any:
    if fn is None:
        return None
    if not callable(fn):
        raise TypeError(f"{what} must be callable")
    try:
        signature(fn).bind(None)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must accept one argument") from None
    return fn


class Client(NativeResource):
    """An MQTT 5 client: one connection to ``client_options.host_name``, kept alive
    between :meth:`start` and :meth:`stop`."""

    def __init__(self, client_options: ClientOptions) -> None:
        super().__init__()
        if not isinstance(client_options, ClientOptions):
            raise TypeError("client_options must be a ClientOptions")
        for name in ("websocket_handshake_transform", "on_publish_callback_fn",
                     "on_lifecycle_event_stopped_fn", "on_lifecycle_event_attempting_connect_fn",
                     "on_lifecycle_event_connection_success_fn",
                     "on_lifecycle_event_connection_failure_fn",
                     "on_lifecycle_event_disconnection_fn"):
            _check_callback(getattr(client_options, name), name)
        from ._mqtt.driver5 import ClientDriver

        self.tls_ctx = client_options.tls_ctx
        self._driver = ClientDriver(self, client_options)
        self.adapter_options = _Mqtt5to3AdapterOptions.of(client_options)
        # Dropping the last reference stops the client (as releasing a native one does).
        weakref.finalize(self, ClientDriver.terminate, self._driver)

    def start(self) -> None:
        """Begin connecting (and keep reconnecting) to the broker.  Returns at once."""
        self._check_fork()
        self._driver.start()

    def stop(self, disconnect_packet: DisconnectPacket = None) -> None:  # type: ignore[assignment]
        """Close the connection (sending ``disconnect_packet`` first if given) and stop
        reconnecting.  Returns at once; the stopped callback follows."""
        self._check_fork()
        if disconnect_packet is not None and not isinstance(disconnect_packet, DisconnectPacket):
            raise TypeError("disconnect_packet must be a DisconnectPacket")
        self._driver.stop(disconnect_packet)

    def publish(self, publish_packet: PublishPacket) -> Future[PublishCompletionData]:
        """Send a PUBLISH.  The future gives a :class:`PublishCompletionData` (with the
        PUBACK for QoS 1) or the error that failed it."""
        self._check_fork()
        if not isinstance(publish_packet, PublishPacket):
            raise TypeError("publish_packet must be a PublishPacket")
        return self._driver.publish(publish_packet)

    def subscribe(self, subscribe_packet: SubscribePacket) -> Future[SubackPacket]:
        """Send a SUBSCRIBE.  The future gives the :class:`SubackPacket`."""
        self._check_fork()
        if not isinstance(subscribe_packet, SubscribePacket):
            raise TypeError("subscribe_packet must be a SubscribePacket")
        return self._driver.subscribe(subscribe_packet)

    def unsubscribe(self, unsubscribe_packet: UnsubscribePacket) -> Future[UnsubackPacket]:
        """Send an UNSUBSCRIBE.  The future gives the :class:`UnsubackPacket`."""
        self._check_fork()
        if not isinstance(unsubscribe_packet, UnsubscribePacket):
            raise TypeError("unsubscribe_packet must be a UnsubscribePacket")
        return self._driver.unsubscribe(unsubscribe_packet)

    def get_stats(self) -> OperationStatisticsData:
        """Current statistics of the client's operation queues."""
        self._check_fork()
        return self._driver.get_stats()

    def invoke_publish_acknowledgement(
            self, publish_acknowledgement_control_handle: PublishAcknowledgementControlHandle) -> None:
        """Send the PUBACK of a message whose acknowledgement was taken over in the
        publish callback."""
        if not isinstance(publish_acknowledgement_control_handle, PublishAcknowledgementControlHandle):
            raise TypeError("expected a PublishAcknowledgementControlHandle")
        self._driver.invoke_puback(publish_acknowledgement_control_handle._control_id)

    def new_connection(self, on_connection_interrupted: Callable[..., None] | None = None,
                       on_connection_resumed: Callable[..., None] | None = None,
                       on_connection_success: Callable[..., None] | None = None,
                       on_connection_failure: Callable[..., None] | None = None,
                       on_connection_closed: Callable[..., None] | None = None) -> Connection:
        """A ``crtpy.mqtt.Connection`` (the MQTT 3.1.1 API) that runs on this client.

        ``connect()`` starts this client (after applying the connection's client id,
        keep-alive, ping timeout and clean-session setting), ``disconnect()`` stops it;
        operations go through this client's queue.  The callbacks have the signatures
        described in ``crtpy.mqtt.Connection``.  The connection's attributes start from
        this client's options (``adapter_options``); transport, credentials, will and
        reconnect delays are always this client's.

        Returns:
            the adapter, a :class:`crtpy.mqtt.Connection`.
        """
        from .mqtt import Connection

        a = self.adapter_options
        return Connection(
            self, a.host_name, a.port if a.port is not None else self._driver.port, a.client_id,
            clean_session=a.clean_session,
            on_connection_interrupted=on_connection_interrupted, on_connection_resumed=on_connection_resumed,
            on_connection_success=on_connection_success, on_connection_failure=on_connection_failure,
            on_connection_closed=on_connection_closed,
            # The reference passes the millisecond delays through unchanged; so do we
            # (they are not used: the reconnect delays are this client's).
            reconnect_min_timeout_secs=a.min_reconnect_delay_ms, reconnect_max_timeout_secs=a.max_reconnect_delay_ms,
            keep_alive_secs=a.keep_alive_secs, ping_timeout_ms=a.ping_timeout_ms,
            protocol_operation_timeout_ms=a.ack_timeout_secs * 1000, socket_options=a.socket_options,
            disable_metrics=a.disable_metrics)


@dataclass
class _Mqtt5to3AdapterOptions:
    """What ``Client.new_connection()`` copies into the 3.1.1 Connection: the client's
    options with the 3.1.1 defaults where they are unset (client id "", reconnect
    5/60, ping timeout 3000 ms, keep-alive 1200 s, no operation timeout, clean
    session unless the session behaviour is REJOIN_ALWAYS)."""

    host_name: str
    port: int | None
    client_id: str
    socket_options: SocketOptions
    min_reconnect_delay_ms: int
    max_reconnect_delay_ms: int
    ping_timeout_ms: int
    keep_alive_secs: int
    ack_timeout_secs: int
    clean_session: bool
    disable_metrics: bool

    @classmethod
    def of(cls, o: ClientOptions) -> _Mqtt5to3AdapterOptions:
        from .io import SocketOptions as _SocketOptions

        co = o.connect_options
        cid = co.client_id if co is not None else None
        ka = co.keep_alive_interval_sec if co is not None else None
        sb = o.session_behavior
        return cls(
            host_name=o.host_name, port=o.port, client_id="" if cid is None else cid,
            socket_options=o.socket_options if o.socket_options else _SocketOptions(),
            min_reconnect_delay_ms=5 if o.min_reconnect_delay_ms is None else o.min_reconnect_delay_ms,
            max_reconnect_delay_ms=60 if o.max_reconnect_delay_ms is None else o.max_reconnect_delay_ms,
            ping_timeout_ms=3000 if o.ping_timeout_ms is None else o.ping_timeout_ms,
            keep_alive_secs=1200 if ka is None else ka,
            ack_timeout_secs=0 if o.ack_timeout_sec is None else o.ack_timeout_sec,
            clean_session=True if not sb else int(sb) < int(ClientSessionBehaviorType.REJOIN_ALWAYS),
            disable_metrics=bool(o.disable_metrics))
