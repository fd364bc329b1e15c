"""Request-response and streaming operations over MQTT, as the AWS IoT service
clients (Shadow, Jobs, Identity) use them.

A :class:`Client` rides on an existing :class:`crtpy.mqtt5.Client` or
:class:`crtpy.mqtt.Connection`.  It subscribes to response topics on demand, shares
those subscriptions between concurrent operations within the configured budgets,
publishes requests and matches responses to them by correlation token.
Completion futures and listener callbacks never run on an event-loop thread.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import NativeResource, mqtt5
from ._errors import code_of

if TYPE_CHECKING:
    from . import mqtt

__all__ = [
    "Client",
    "ClientOptions",
    "IncomingPublishEvent",
    "IncomingPublishListener",
    "RequestOptions",
    "Response",
    "ResponsePath",
    "StreamingOperation",
    "StreamingOperationOptions",
    "SubscriptionStatusEvent",
    "SubscriptionStatusEventType",
    "SubscriptionStatusListener",
]

_UINT32_MAX = 0xFFFFFFFF


def _require(condition: bool, what: str) -> None:
    # The reference checks options with assertions; these checks also hold under -O.
    if not condition:
        raise AssertionError(what)


class SubscriptionStatusEventType(IntEnum):
    """What happened to the subscription behind a streaming operation."""

    SUBSCRIPTION_ESTABLISHED = 0
    """The subscription is in place: matching messages will be delivered."""

    SUBSCRIPTION_LOST = 1
    """The subscription went away (a reconnection without a session); the client is
    subscribing again and an ESTABLISHED event follows when it succeeds."""

    SUBSCRIPTION_HALTED = 2
    """The client stopped trying: the broker refused the filter, or the streaming
    subscription budget is full.  Terminal."""


@dataclass
class SubscriptionStatusEvent:
    """A change of a streaming operation's subscription.

    Args:
        type (SubscriptionStatusEventType): what changed
        error (Optional[Exception]): why, for LOST and HALTED events when known
    """

    type: SubscriptionStatusEventType = None  # type: ignore[assignment]
    error: Exception | None = None


@dataclass
class IncomingPublishEvent:
    """A message received by a streaming operation.

    Args:
        topic (str): the topic it was published to
        payload (Optional[bytes]): its payload
    """

    topic: str
    payload: bytes | None = None


SubscriptionStatusListener = Callable[[SubscriptionStatusEvent], None]
"""Type of a callable receiving :class:`SubscriptionStatusEvent`."""

IncomingPublishListener = Callable[[IncomingPublishEvent], None]
"""Type of a callable receiving :class:`IncomingPublishEvent`."""


@dataclass
class StreamingOperationOptions:
    """Settings of a streaming operation.

    Args:
        subscription_topic_filter (str): the topic filter to listen on
        subscription_status_listener (Optional[SubscriptionStatusListener]): called on
            each subscription status change
        incoming_publish_listener (Optional[IncomingPublishListener]): called for each
            message matching the filter
    """

    subscription_topic_filter: str
    subscription_status_listener: SubscriptionStatusListener | None = None
    incoming_publish_listener: IncomingPublishListener | None = None

    def validate(self) -> None:
        """Check the field types; raises AssertionError on a mismatch."""
        _require(isinstance(self.subscription_topic_filter, str),
                 "subscription_topic_filter must be a str")
        _require(self.subscription_status_listener is None or callable(self.subscription_status_listener),
                 "subscription_status_listener must be callable or None")
        _require(self.incoming_publish_listener is None or callable(self.incoming_publish_listener),
                 "incoming_publish_listener must be callable or None")


@dataclass
class Response:
    """The message that answered a request.

    Args:
        topic (str): the response topic it arrived on (tells accepted from rejected)
        payload (Optional[bytes]): its payload
    """

    topic: str
    payload: bytes | None = None


@dataclass
class ResponsePath:
    """One way a response may arrive: a topic, and where the correlation token sits in
    the JSON payloads published there.

    Args:
        topic (str): the response topic
        correlation_token_json_path (Optional[str]): dotted path of the token in the
            payload (``"clientToken"``, ``"a.b.token"``); None when the service sends none
    """

    topic: str
    correlation_token_json_path: str | None = None

    def validate(self) -> None:
        """Check the field types; raises AssertionError on a mismatch."""
        _require(isinstance(self.topic, str), "ResponsePath.topic must be a str")
        _require(self.correlation_token_json_path is None or isinstance(self.correlation_token_json_path, str),
                 "ResponsePath.correlation_token_json_path must be a str or None")


@dataclass
class RequestOptions:
    """Settings of one request.

    Args:
        subscription_topic_filters (Sequence[str]): filters covering every response path;
            they are subscribed before the request is published
        response_paths (Sequence[ResponsePath]): every topic a response may arrive on
        publish_topic (str): where the request is published
        payload (bytes): the request message
        correlation_token (Optional[str]): the token the request carries and its response
            must contain; None for services without tokens (such requests then run one
            at a time)
    """

    subscription_topic_filters: Sequence[str]
    response_paths: Sequence[ResponsePath]
    publish_topic: str
    payload: bytes
    correlation_token: str | None = None

    def validate(self) -> None:
        """Check the field types; raises AssertionError on a mismatch."""
        _require(isinstance(self.subscription_topic_filters, Sequence),
                 "subscription_topic_filters must be a sequence")
        for f in self.subscription_topic_filters:
            _require(isinstance(f, str), "subscription_topic_filters must hold str")
        _require(isinstance(self.response_paths, Sequence), "response_paths must be a sequence")
        for p in self.response_paths:
            _require(isinstance(p, ResponsePath), "response_paths must hold ResponsePath")
            p.validate()
        _require(isinstance(self.publish_topic, str), "publish_topic must be a str")
        _require(isinstance(self.payload, bytes), "payload must be bytes")
        _require(self.correlation_token is None or isinstance(self.correlation_token, str),
                 "correlation_token must be a str or None")


@dataclass
class ClientOptions:
    """Settings of a request-response :class:`Client`.

    Args:
        max_request_response_subscriptions (int): subscriptions the client may hold at
            once for requests (at least 2)
        max_streaming_subscriptions (int): subscriptions the client may hold at once for
            streaming operations
        operation_timeout_in_seconds (Optional[int]): how long a request may take, from
            :meth:`Client.make_request` to its response
    """

    max_request_response_subscriptions: int
    max_streaming_subscriptions: int
    operation_timeout_in_seconds: int | None = 60

    def validate(self) -> None:
        """Check the field types; raises AssertionError on a mismatch."""
        _require(isinstance(self.max_request_response_subscriptions, int),
                 "max_request_response_subscriptions must be an int")
        _require(isinstance(self.max_streaming_subscriptions, int),
                 "max_streaming_subscriptions must be an int")
        _require(isinstance(self.operation_timeout_in_seconds, int),
                 "operation_timeout_in_seconds must be an int")


def _native_style_error(name: str, what: str) -> RuntimeError:
    # The reference reports these synchronous refusals as a RuntimeError naming the code.
    return RuntimeError(f"{code_of(name)} ({name}): {what}")


def _invalid_argument(what: str) -> RuntimeError:
    return _native_style_error("AWS_ERROR_INVALID_ARGUMENT", what)


def _uint32(value: int, name: str) -> int:
    if value < 0 or value > _UINT32_MAX:
        raise OverflowError(f"{name} must fit in an unsigned 32-bit integer")
    return value


def _is_mqtt311_connection(obj: Any) -> bool:
    try:
        from . import mqtt
    except ImportError:
        return False
    return isinstance(obj, mqtt.Connection)


class Client(NativeResource):
    """A request-response client over an MQTT5 client or an MQTT 3.1.1 connection.

    The client does not start, stop or connect ``protocol_client``; it works whenever
    that client is connected.  Dropping the last reference to the client (after its
    streaming operations) fails its pending requests with
    ``AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN`` and releases its subscriptions.

    Args:
        protocol_client (Union[mqtt5.Client, mqtt.Connection]): the MQTT transport
        client_options (ClientOptions): budgets and timeout
    """

    def __init__(self, protocol_client: mqtt5.Client | mqtt.Connection,
                 client_options: ClientOptions) -> None:
        is5 = isinstance(protocol_client, mqtt5.Client)
        _require(is5 or _is_mqtt311_connection(protocol_client),
                 "protocol_client must be a crtpy.mqtt5.Client or a crtpy.mqtt.Connection")
        _require(isinstance(client_options, ClientOptions), "client_options must be a ClientOptions")
        client_options.validate()
        super().__init__()
        max_rr = _uint32(client_options.max_request_response_subscriptions, "max_request_response_subscriptions")
        max_streaming = _uint32(client_options.max_streaming_subscriptions, "max_streaming_subscriptions")
        timeout = _uint32(client_options.operation_timeout_in_seconds,  # type: ignore[arg-type]
                          "operation_timeout_in_seconds")
        if max_rr < 2:
            raise _invalid_argument("max_request_response_subscriptions must be at least 2")
        if timeout == 0:
            raise _invalid_argument("operation_timeout_in_seconds must be positive")
        self._check_fork()
        protocol_client._check_fork()

        from ._request_response.adapters import Mqtt5Adapter, Mqtt311Adapter
        from ._request_response.engine import Engine

        adapter: Mqtt5Adapter | Mqtt311Adapter
        if isinstance(protocol_client, mqtt5.Client):
            adapter = Mqtt5Adapter(protocol_client)
        else:
            adapter = Mqtt311Adapter(protocol_client)
        self._engine = Engine(adapter, max_rr, max_streaming, float(timeout))
        weakref.finalize(self, self._engine.close)

    def make_request(self, options: RequestOptions) -> Future[Response]:
        """Start a request: subscribe to the response topics (sharing subscriptions that
        are already there), publish the request, wait for the matching response.

        Args:
            options (RequestOptions): what to send and where answers may arrive

        Returns:
            concurrent.futures.Future: completes with the :class:`Response`, or fails
            with an :class:`~crtpy.exceptions.AwsCrtError`
            (``AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT``, ``..._CLIENT_SHUT_DOWN``,
            ``..._SUBSCRIBE_FAILURE``, ``..._PUBLISH_FAILURE``) or ``ValueError`` for
            an invalid topic or an empty payload.
        """
        self._check_fork()
        _require(isinstance(options, RequestOptions), "options must be a RequestOptions")
        options.validate()
        if len(options.subscription_topic_filters) == 0:
            raise TypeError("subscription_topic_filters must not be empty")
        if len(options.response_paths) == 0:
            raise TypeError("response_paths must not be empty")
        from ._errors import error
        from ._request_response.topics import valid_filter, valid_topic
        from ._runtime.futures import failed

        bad = None
        if not valid_topic(options.publish_topic):
            bad = "publish_topic is not a valid topic"
        elif not options.payload:
            bad = "payload must not be empty"
        elif not all(valid_filter(f) for f in options.subscription_topic_filters):
            bad = "subscription_topic_filters holds an invalid topic filter"
        elif not all(valid_filter(p.topic) for p in options.response_paths):
            bad = "a response path has an invalid topic"
        if bad is not None:
            return failed(error("AWS_ERROR_INVALID_ARGUMENT", bad))
        return self._engine.submit(
            list(options.subscription_topic_filters),
            [(p.topic, p.correlation_token_json_path) for p in options.response_paths],
            options.publish_topic, bytes(options.payload), options.correlation_token)

    def create_stream(self, options: StreamingOperationOptions) -> StreamingOperation:
        """Make a streaming operation on one topic filter.  Nothing is subscribed until
        :meth:`StreamingOperation.open`.

        Args:
            options (StreamingOperationOptions): the filter and the listeners

        Returns:
            StreamingOperation: the new, not yet opened, operation.
        """
        self._check_fork()
        _require(isinstance(options, StreamingOperationOptions), "options must be a StreamingOperationOptions")
        options.validate()
        from ._request_response.topics import valid_filter

        if not valid_filter(options.subscription_topic_filter):
            raise _invalid_argument("subscription_topic_filter is not a valid topic filter")
        status_listener = options.subscription_status_listener
        publish_listener = options.incoming_publish_listener

        def on_status(kind: int, exc: BaseException | None) -> None:
            if status_listener is not None:
                status_listener(SubscriptionStatusEvent(SubscriptionStatusEventType(kind), exc))  # type: ignore[arg-type]

        def on_publish(topic: str, payload: bytes) -> None:
            if publish_listener is not None:
                publish_listener(IncomingPublishEvent(topic, payload))

        stream_id = self._engine.new_stream(options.subscription_topic_filter, on_status, on_publish)
        return StreamingOperation((self, stream_id))


class StreamingOperation(NativeResource):
    """A subscription to a stream of messages on one topic filter, made by
    :meth:`Client.create_stream`.  Dropping the last reference ends it (the client
    unsubscribes unless another operation shares the filter)."""

    def __init__(self, binding: Any) -> None:
        super().__init__()
        client, stream_id = binding
        self._binding = binding
        self._client = client
        self._stream_id = stream_id
        self._open_lock = threading.Lock()
        self._opened = False
        weakref.finalize(self, client._engine.close_stream, stream_id)

    def open(self) -> None:
        """Start listening: subscribe (or share an existing subscription) and report
        status changes and messages to the listeners.  An operation opens only once:
        a second call raises ``RuntimeError`` naming
        ``AWS_ERROR_MQTT_REUQEST_RESPONSE_STREAM_ALREADY_ACTIVATED`` (sic)."""
        self._check_fork()
        with self._open_lock:
            if self._opened:
                raise _native_style_error("AWS_ERROR_MQTT_REUQEST_RESPONSE_STREAM_ALREADY_ACTIVATED",
                                          "the streaming operation is already open")
            self._opened = True
        self._client._engine.open_stream(self._stream_id)
