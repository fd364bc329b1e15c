"""Runs the MQTT 5 state machine (``client5.Core``) on a crtpy loop thread.

The driver converts the public packet types of ``crtpy.mqtt5`` to the codec's packets
and back, opens connections with ``crtpy._net.connect.open_connection``, reconnects with
the shared backoff helper, and posts user callbacks to a :class:`CallbackQueue` (never
running them on the loop thread).  Operations submitted from user threads are batched
into one loop wake-up, or, on a quiet plain-TCP connection, written by the submitting
thread itself under the driver's lock (see ``crtpy._mqtt.stream``).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
import threading
import time
import weakref
from typing import Any

from .. import mqtt5
from .. import mqtt5 as m
from .._errors import error
from .._runtime.backoff import Backoff
from .._runtime.callbacks import CallbackQueue
from .._runtime.futures import CrtFuture
from . import codec as c
from . import stream
from .client5 import (
    ALIAS_DISABLED,
    ALIAS_LRU,
    ALIAS_MANUAL,
    CONNECTED,
    DEFAULT_CONNACK_TIMEOUT_MS,
    DEFAULT_INBOUND_ALIAS_CACHE,
    DEFAULT_KEEP_ALIVE_SEC,
    DEFAULT_OUTBOUND_ALIAS_CACHE,
    DEFAULT_PING_TIMEOUT_MS,
    FAIL_QOS0_PUBLISH,
    Config,
    Core,
    Op,
)
from .listeners import ListenerHost, ListenerSet
from .stream import (
    CoreTimer,
    LoopInbox,
    MqttStreamProtocol,
    completing,
    inline_reader,
    open_stream,
    wait_or_timeout,
)

_MONO = time.monotonic
_log = logging.getLogger("crtpy.mqtt5")

# The automatic PUBACK of a QoS 1 message, handed over by the callback worker, goes out
# with the loop's next wake-up for another reason (the user's next operation, a read
# that delivers more messages) or at the latest this long after the delivery.  A loop
# wake-up of its own per message costs more than the message's round trip on a quiet
# machine (each cross-thread wake-up is expensive in a VM).
_PUBACK_FLUSH_SEC = 0.001


# -- validation helpers ------------------------------------------------------------------
def _bad(name: str, msg: str) -> BaseException:
    return error(name, msg)


def _check_str(value: Any, what: str, err: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    problem = c.check_utf8(value, what)
    if problem:
        raise _bad(err, problem)
    if not allow_empty and not value:
        raise _bad(err, f"{what} must not be empty")
    return value


def valid_topic_filter(f: str) -> bool:
    if not f:
        return False
    levels = f.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _user_props(props: Any, err: str) -> list[tuple[str, str]] | None:
    if not props:
        return None
    out = []
    for up in props:
        name = getattr(up, "name", None)
        value = getattr(up, "value", None)
        if not isinstance(name, str) or not isinstance(value, str):
            raise _bad("AWS_ERROR_MQTT5_USER_PROPERTY_VALIDATION", "user property name and value must be str")
        for s in (name, value):
            if c.check_utf8(s):
                raise _bad("AWS_ERROR_MQTT5_USER_PROPERTY_VALIDATION", "invalid user property string")
        out.append((name, value))
    return out


def _as_bytes(data: Any, what: str) -> bytes:
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what}: a bytes-like object or str is required, not '{type(data).__name__}'")


def _uint(value: Any, bits: int, what: str, err: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if not 0 <= value < (1 << bits):
        raise _bad(err, f"{what} out of range")
    return value


_valid_topics: set[str] = set()
_VALID_TOPICS_MAX = 4096


def publish_to_codec(p: mqtt5.PublishPacket, *, will: bool = False) -> c.Publish:
    err = "AWS_ERROR_MQTT5_CONNECT_OPTIONS_VALIDATION" if will else "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"
    topic = p.topic
    if topic not in _valid_topics:  # validated topics are remembered (bounded)
        _check_str(topic, "topic", err)
        if not topic or "+" in topic or "#" in topic:
            raise _bad(err, f"invalid topic {topic!r}")
        if len(_valid_topics) >= _VALID_TOPICS_MAX:
            _valid_topics.clear()
        _valid_topics.add(topic)
    qos: Any = p.qos
    if qos != 0 and qos != 1:
        if qos is None:
            qos = 0
        else:
            raise _bad(err, "this client publishes at QoS 0 or 1 only")
    qos = int(qos)
    payload = p.payload
    if type(payload) is not bytes:
        payload = _as_bytes(payload, "payload")
    if (p.payload_format_indicator is None and p.message_expiry_interval_sec is None
            and p.topic_alias is None and p.response_topic is None and p.correlation_data_bytes is None
            and p.correlation_data is None and p.content_type is None and not p.user_properties):
        return c.Publish(topic, payload, qos, bool(p.retain), False, 0, {})
    props: dict[int, Any] = {}
    if p.payload_format_indicator is not None:
        pfi = int(p.payload_format_indicator)
        if pfi not in (0, 1):
            raise _bad(err, "invalid payload format indicator")
        props[c.P_PAYLOAD_FORMAT_INDICATOR] = pfi
    if p.message_expiry_interval_sec is not None:
        props[c.P_MESSAGE_EXPIRY_INTERVAL] = _uint(p.message_expiry_interval_sec, 32, "message_expiry_interval_sec", err)
    if p.topic_alias is not None and not will:
        alias = _uint(p.topic_alias, 16, "topic_alias", err)
        if alias == 0:
            raise _bad(err, "topic alias 0 is not allowed")
        props[c.P_TOPIC_ALIAS] = alias
    if p.response_topic is not None:
        rt = _check_str(p.response_topic, "response_topic", err)
        if not rt or "+" in rt or "#" in rt:
            raise _bad(err, "invalid response topic")
        props[c.P_RESPONSE_TOPIC] = rt
    corr = p.correlation_data_bytes if p.correlation_data_bytes is not None else p.correlation_data
    if corr is not None:
        cb = _as_bytes(corr, "correlation_data")
        if len(cb) > 65535:
            raise _bad(err, "correlation data longer than 65535 bytes")
        props[c.P_CORRELATION_DATA] = cb
    if p.content_type is not None:
        props[c.P_CONTENT_TYPE] = _check_str(p.content_type, "content_type", err)
    ups = _user_props(p.user_properties, err)
    if ups:
        props[c.P_USER_PROPERTY] = ups
    return c.Publish(topic, payload, qos, bool(p.retain), False, 0, props)


def subscribe_to_codec(p: mqtt5.SubscribePacket) -> c.Subscribe:
    err = "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"
    subs = list(p.subscriptions or ())
    if not subs:
        raise _bad(err, "a SUBSCRIBE needs at least one subscription")
    out = []
    for s in subs:
        f = _check_str(s.topic_filter, "topic_filter", err)
        if not valid_topic_filter(f):
            raise _bad(err, f"invalid topic filter {f!r}")
        qos = int(s.qos) if s.qos is not None else 0
        if qos not in (0, 1):
            raise _bad(err, "this client subscribes at QoS 0 or 1 only")
        rh = int(s.retain_handling_type) if s.retain_handling_type is not None else 0
        if rh not in (0, 1, 2):
            raise _bad(err, "invalid retain handling type")
        if f.startswith("$share/"):
            parts = f.split("/", 2)
            if len(parts) < 3 or not parts[1] or "+" in parts[1] or "#" in parts[1] or not parts[2]:
                raise _bad(err, f"invalid shared subscription {f!r}")
            if s.no_local:
                raise _bad(err, "no_local is not allowed on shared subscriptions")
        out.append(c.Subscription(f, qos, bool(s.no_local), bool(s.retain_as_published), rh))
    props: dict[int, Any] = {}
    if p.subscription_identifier is not None:
        sid = p.subscription_identifier
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid <= c.MAX_VARINT:
            raise _bad(err, "subscription identifier must be in 1..268435455")
        props[c.P_SUBSCRIPTION_IDENTIFIER] = sid
    ups = _user_props(p.user_properties, err)
    if ups:
        props[c.P_USER_PROPERTY] = ups
    return c.Subscribe(0, out, props)


def unsubscribe_to_codec(p: mqtt5.UnsubscribePacket) -> c.Unsubscribe:
    err = "AWS_ERROR_MQTT5_UNSUBSCRIBE_OPTIONS_VALIDATION"
    filters = list(p.topic_filters or ())
    if not filters:
        raise _bad(err, "an UNSUBSCRIBE needs at least one topic filter")
    for f in filters:
        _check_str(f, "topic_filter", err)
        if not valid_topic_filter(f):
            raise _bad(err, f"invalid topic filter {f!r}")
    props: dict[int, Any] = {}
    ups = _user_props(p.user_properties, err)
    if ups:
        props[c.P_USER_PROPERTY] = ups
    return c.Unsubscribe(0, filters, props)


def disconnect_to_codec(p: mqtt5.DisconnectPacket) -> c.Disconnect:
    err = "AWS_ERROR_MQTT5_DISCONNECT_OPTIONS_VALIDATION"
    props: dict[int, Any] = {}
    if p.session_expiry_interval_sec is not None:
        props[c.P_SESSION_EXPIRY_INTERVAL] = _uint(p.session_expiry_interval_sec, 32, "session_expiry_interval_sec", err)
    if p.reason_string is not None:
        props[c.P_REASON_STRING] = _check_str(p.reason_string, "reason_string", err)
    if p.server_reference is not None:
        raise _bad(err, "clients must not send a server reference")
    ups = _user_props(p.user_properties, err)
    if ups:
        props[c.P_USER_PROPERTY] = ups
    code = int(p.reason_code) if p.reason_code is not None else 0
    return c.Disconnect(code, props)


# -- codec -> public ---------------------------------------------------------------------
def _ups_out(props: c.Props) -> list[mqtt5.UserProperty] | None:
    ups = props.get(c.P_USER_PROPERTY)
    if not ups:
        return None
    return [m.UserProperty(n, v) for n, v in ups]


def _enum_or_none(enum_cls: Any, value: Any) -> Any:
    try:
        return enum_cls(value)
    except (ValueError, TypeError):
        return None


def connack_from_codec(p: c.Connack) -> mqtt5.ConnackPacket:
    pr = p.props

    def b(k: int) -> bool | None:
        return bool(pr[k]) if k in pr else None

    return m.ConnackPacket(
        session_present=p.session_present,
        reason_code=_enum_or_none(m.ConnectReasonCode, p.reason_code),
        session_expiry_interval_sec=pr.get(c.P_SESSION_EXPIRY_INTERVAL),
        receive_maximum=pr.get(c.P_RECEIVE_MAXIMUM),
        maximum_qos=_enum_or_none(m.QoS, pr[c.P_MAXIMUM_QOS]) if c.P_MAXIMUM_QOS in pr else None,
        retain_available=b(c.P_RETAIN_AVAILABLE),
        maximum_packet_size=pr.get(c.P_MAXIMUM_PACKET_SIZE),
        assigned_client_identifier=pr.get(c.P_ASSIGNED_CLIENT_IDENTIFIER),
        topic_alias_maximum=pr.get(c.P_TOPIC_ALIAS_MAXIMUM),
        reason_string=pr.get(c.P_REASON_STRING),
        user_properties=_ups_out(pr),
        wildcard_subscriptions_available=b(c.P_WILDCARD_SUBSCRIPTION_AVAILABLE),
        subscription_identifiers_available=b(c.P_SUBSCRIPTION_IDENTIFIER_AVAILABLE),
        shared_subscription_available=b(c.P_SHARED_SUBSCRIPTION_AVAILABLE),
        server_keep_alive_sec=pr.get(c.P_SERVER_KEEP_ALIVE),
        response_information=pr.get(c.P_RESPONSE_INFORMATION),
        server_reference=pr.get(c.P_SERVER_REFERENCE),
    )


def negotiated_from_core(n: Any) -> mqtt5.NegotiatedSettings:
    return m.NegotiatedSettings(
        maximum_qos=m.QoS(n.maximum_qos), session_expiry_interval_sec=n.session_expiry,
        receive_maximum_from_server=n.receive_maximum, maximum_packet_size_to_server=n.maximum_packet_size,
        topic_alias_maximum_to_server=n.topic_alias_maximum_to_server,
        topic_alias_maximum_to_client=n.topic_alias_maximum_to_client,
        server_keep_alive_sec=n.keep_alive, retain_available=n.retain_available,
        wildcard_subscriptions_available=n.wildcard_available,
        subscription_identifiers_available=n.sub_ids_available,
        shared_subscriptions_available=n.shared_available, rejoined_session=n.rejoined_session,
        client_id=n.client_id)


def disconnect_from_codec(p: c.Disconnect) -> mqtt5.DisconnectPacket:
    pr = p.props
    return m.DisconnectPacket(
        reason_code=_enum_or_none(m.DisconnectReasonCode, p.reason_code),
        session_expiry_interval_sec=pr.get(c.P_SESSION_EXPIRY_INTERVAL),
        reason_string=pr.get(c.P_REASON_STRING), user_properties=_ups_out(pr),
        server_reference=pr.get(c.P_SERVER_REFERENCE))


def publish_from_codec(p: c.Publish) -> mqtt5.PublishPacket:
    pr = p.props
    out = m.PublishPacket(payload=p.payload, qos=m.QoS(p.qos), retain=p.retain, topic=p.topic)
    if pr:
        if c.P_PAYLOAD_FORMAT_INDICATOR in pr:
            out.payload_format_indicator = _enum_or_none(m.PayloadFormatIndicator, pr[c.P_PAYLOAD_FORMAT_INDICATOR])
        out.message_expiry_interval_sec = pr.get(c.P_MESSAGE_EXPIRY_INTERVAL)
        out.topic_alias = pr.get(c.P_TOPIC_ALIAS)
        out.response_topic = pr.get(c.P_RESPONSE_TOPIC)
        corr = pr.get(c.P_CORRELATION_DATA)
        if corr is not None:
            out.correlation_data_bytes = corr
            try:
                out.correlation_data = corr.decode("utf-8")
            except UnicodeDecodeError:
                pass
        out.subscription_identifiers = pr.get(c.P_SUBSCRIPTION_IDENTIFIER)
        out.content_type = pr.get(c.P_CONTENT_TYPE)
        out.user_properties = _ups_out(pr)
    return out


# -- configuration -----------------------------------------------------------------------
def build_config(o: mqtt5.ClientOptions) -> Config:
    err = "AWS_ERROR_MQTT5_CLIENT_OPTIONS_VALIDATION"
    cerr = "AWS_ERROR_MQTT5_CONNECT_OPTIONS_VALIDATION"
    cfg = Config()
    co = o.connect_options or m.ConnectPacket()
    conn = cfg.connect
    conn.client_id = _check_str(co.client_id, "client_id", cerr) if co.client_id is not None else ""
    ka = co.keep_alive_interval_sec
    conn.keep_alive = DEFAULT_KEEP_ALIVE_SEC if ka is None else _uint(ka, 16, "keep_alive_interval_sec", cerr)
    if co.username is not None:
        _check_str(co.username, "username", cerr)
    # Like the reference, SDK metrics ride in the username unless disable_metrics is set.
    from ..aws_iot_metrics import _mqtt5_username

    username = _mqtt5_username(o)
    if username is not None:
        conn.username = _check_str(username, "username", cerr)
    if co.password is not None:
        conn.password = _as_bytes(co.password, "password")
    props = conn.props
    if co.session_expiry_interval_sec is not None:
        props[c.P_SESSION_EXPIRY_INTERVAL] = _uint(co.session_expiry_interval_sec, 32, "session_expiry_interval_sec", cerr)
    if co.request_response_information is not None:
        props[c.P_REQUEST_RESPONSE_INFORMATION] = 1 if co.request_response_information else 0
    if co.request_problem_information is not None:
        props[c.P_REQUEST_PROBLEM_INFORMATION] = 1 if co.request_problem_information else 0
    if co.receive_maximum is not None:
        rm = _uint(co.receive_maximum, 16, "receive_maximum", cerr)
        if rm == 0:
            raise _bad(cerr, "receive_maximum must not be 0")
        props[c.P_RECEIVE_MAXIMUM] = rm
    if co.maximum_packet_size is not None:
        mps = _uint(co.maximum_packet_size, 32, "maximum_packet_size", cerr)
        if mps == 0:
            raise _bad(cerr, "maximum_packet_size must not be 0")
        props[c.P_MAXIMUM_PACKET_SIZE] = mps
        cfg.maximum_packet_size_from_server = mps
    ups = _user_props(co.user_properties, cerr)
    if ups:
        props[c.P_USER_PROPERTY] = ups
    if co.will is not None:
        will = publish_to_codec(co.will, will=True)
        if co.will_delay_interval_sec is not None:
            will.props[c.P_WILL_DELAY_INTERVAL] = _uint(co.will_delay_interval_sec, 32, "will_delay_interval_sec", cerr)
        conn.will = will
    sb = int(o.session_behavior) if o.session_behavior is not None else 0
    if sb not in (0, 1, 2, 3):
        raise _bad(err, "invalid session_behavior")
    cfg.session_behavior = sb or 1
    oq = int(o.offline_queue_behavior) if o.offline_queue_behavior is not None else 0
    if oq not in (0, 1, 2, 3):
        raise _bad(err, "invalid offline_queue_behavior")
    cfg.offline_queue = oq or FAIL_QOS0_PUBLISH
    cfg.ping_timeout = (DEFAULT_PING_TIMEOUT_MS if o.ping_timeout_ms is None else o.ping_timeout_ms) / 1000.0
    cfg.connack_timeout = (DEFAULT_CONNACK_TIMEOUT_MS if not o.connack_timeout_ms else o.connack_timeout_ms) / 1000.0
    cfg.ack_timeout = float(o.ack_timeout_sec) if o.ack_timeout_sec else None
    ta = o.topic_aliasing_options
    if ta is not None:
        ob = int(ta.outbound_behavior) if ta.outbound_behavior is not None else 0
        cfg.outbound_alias = {0: ALIAS_DISABLED, 1: ALIAS_MANUAL, 2: ALIAS_LRU, 3: ALIAS_DISABLED}.get(ob, ALIAS_DISABLED)
        if ta.outbound_cache_max_size is not None:
            cfg.outbound_alias_cache = _uint(ta.outbound_cache_max_size, 16, "outbound_cache_max_size", err) \
                or DEFAULT_OUTBOUND_ALIAS_CACHE
        ib = int(ta.inbound_behavior) if ta.inbound_behavior is not None else 0
        if ib == 1:
            size = ta.inbound_cache_max_size
            cfg.inbound_alias_max = DEFAULT_INBOUND_ALIAS_CACHE if not size else _uint(size, 16, "inbound_cache_max_size", err)
            props[c.P_TOPIC_ALIAS_MAXIMUM] = cfg.inbound_alias_max
    ev = o.extended_validation_and_flow_control_options
    cfg.iot_core_limits = ev is not None and int(ev) == 1
    if cfg.iot_core_limits and len(conn.client_id.encode()) > 128:
        raise _bad(cerr, "client id longer than 128 bytes (AWS IoT Core limit)")
    c.encode_connect(conn)  # fail now on anything the codec cannot encode
    return cfg


# -- the asyncio protocol ----------------------------------------------------------------
class _Protocol(MqttStreamProtocol):
    def __init__(self, driver: ClientDriver, direct: bool) -> None:
        super().__init__(driver.lock, direct)
        self.driver = driver

    def data_received(self, data: bytes) -> None:
        d = self.driver
        core = d.core
        self.requickack()  # first: the callbacks posted by after_core() come last
        with d.lock:
            core.data_received(data, _MONO())
            if d.incoming and core.events:  # a read that delivers messages also sends waiting PUBACKs
                d._drain()
            else:
                d.after_core()

    def pause_writing(self) -> None:
        self.driver.core.write_blocked = True  # (inside a write, under the lock)

    def resume_writing(self) -> None:
        d = self.driver
        with d.lock:
            d.core.write_blocked = False
            d.core.service(_MONO())
            d.after_core()


class ClientDriver(LoopInbox, ListenerHost):
    def __init__(self, client: mqtt5.Client, o: mqtt5.ClientOptions) -> None:
        from .._net.connect import pick_loop

        if not isinstance(o.host_name, str) or not o.host_name:
            raise _bad("AWS_ERROR_MQTT5_CLIENT_OPTIONS_VALIDATION", "host_name must be a non-empty str")
        self.proxy = o.http_proxy_options
        self.client_ref = weakref.ref(client)
        self.cfg = build_config(o)
        self.core = Core(self.cfg)
        self.host = o.host_name
        self.tls_ctx = o.tls_ctx
        self.websocket = o.websocket_handshake_transform is not None
        if self.websocket:
            self.default_port = 443 if o.tls_ctx is not None else 80
        else:
            self.default_port = 8883 if o.tls_ctx is not None else 1883
        self.port = o.port if o.port else self.default_port
        self.bootstrap = o.bootstrap
        self.socket_options = o.socket_options
        self.loop_thread = pick_loop(o.bootstrap)
        self.loop = self.loop_thread.loop
        self.callbacks = CallbackQueue()
        self.callbacks.reader = inline_reader(self)  # see crtpy._mqtt.stream (inline reads)
        self.opts = o
        self.min_delay = (1000 if o.min_reconnect_delay_ms is None else o.min_reconnect_delay_ms) / 1000.0
        self.max_delay = (120_000 if o.max_reconnect_delay_ms is None else o.max_reconnect_delay_ms) / 1000.0
        if self.max_delay < self.min_delay:
            raise _bad("AWS_ERROR_MQTT5_CLIENT_OPTIONS_VALIDATION",
                       "max_reconnect_delay_ms is smaller than min_reconnect_delay_ms")
        reset = o.min_connected_time_to_reset_reconnect_delay_ms
        self.reset_after = (30_000 if reset is None else reset) / 1000.0
        self.jitter = int(o.retry_jitter_mode) if o.retry_jitter_mode is not None else 0
        self.on_publish = o.on_publish_callback_fn
        self.want_running = False
        self.connected_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.protocol: _Protocol | None = None
        self.wake: asyncio.Event | None = None
        self.stop_packet: c.Disconnect | None = None
        self.timer = CoreTimer(self.loop, self._on_timer)
        self.incoming: collections.deque[Any] = collections.deque()
        self.incoming_lock = threading.Lock()
        self.incoming_scheduled = False
        self.lock = threading.RLock()  # held by whoever touches the core or writes (see stream)
        self.rest = b""
        self.last_submit = 0.0
        self.puback_flush_armed = False
        self.inline_flush_at = 0.0  # PUBACKs queued by inline reads go out by then
        self.puback_ids = 0
        self.manual_pubacks: dict[int, int] = {}
        # Internal listeners (the 3.1.1 adapter, request-response): see .listeners.
        self.listeners = ListenerSet()

    # -- private listener interface (any thread) ----------------------------------------
    def _is_connected(self) -> bool:
        """Whether a CONNACK was accepted on the current connection (a racy snapshot
        from other threads; exact on the loop thread)."""
        return bool(self.core.state == CONNECTED)

    # -- user thread side -------------------------------------------------------------
    def _post_puback(self, pid: int) -> None:
        """From a callback worker: the automatic PUBACK after the user's callback.  No
        wake-up while the flush timer armed at delivery is pending: the timer clears the
        flag before it drains, so it sees every item appended before the flag was read
        as set."""
        self.incoming.append(("puback", pid))
        if not self.incoming_scheduled and not self.puback_flush_armed:
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)

    def _flush_pubacks(self) -> None:
        self.puback_flush_armed = False
        if self.incoming:
            self._drain()

    def _drain(self) -> None:
        self.incoming_scheduled = False
        pop = self.incoming.popleft
        core = self.core
        with self.lock:
            now = _MONO()
            try:
                while True:
                    item = pop()
                    if type(item) is Op:
                        core.submit(item, now, False)
                    else:
                        core.service(now)  # keep the order of operations and control items
                        self._handle_item(item)
            except IndexError:
                pass
            core.service(now)
            self.after_core()

    def _handle_item(self, item: Any) -> None:
        if type(item) is Op:
            self.core.submit(item, _MONO())
            return
        kind = item[0]
        now = _MONO()
        if kind == "puback":
            self.core.send_puback(item[1], now)
        elif kind == "start":
            self._start_on_loop()
        elif kind == "stop":
            self._stop_on_loop(item[1])
        elif kind == "terminate":
            self._stop_on_loop(None)
            self.core.fail_all(error("AWS_ERROR_MQTT5_CLIENT_TERMINATED"))
        elif kind == "call":  # the 3.1.1 adapter's connect/disconnect (in order with operations)
            try:
                item[1]()
            except Exception:  # noqa: BLE001 - must not end the drain (the items after it)
                _log.exception("MQTT 3.1.1 adapter call failed")

    def start(self) -> None:
        self._post(("start",))

    def stop(self, packet: mqtt5.DisconnectPacket | None) -> None:
        pk = disconnect_to_codec(packet) if packet is not None else None
        self._post(("stop", pk))

    def _submit(self, packet: c.Packet, convert: Any) -> CrtFuture:
        fut = CrtFuture()
        op = Op(packet, completing(fut, convert), _approx_size(packet))
        now = _MONO()
        sock = self._direct_socket(now)
        if sock is None or not self._send_direct(sock, op, now):
            self._post(op)
        return fut

    def _send_direct(self, sock: socket.socket, op: Op, now: float) -> bool:
        """Write ``op`` from this thread if the connection is quiet (see
        ``crtpy._mqtt.stream``); False when it must go through the loop.  Automatic
        PUBACKs waiting in the inbox go out first, in the same write."""
        lock = self.lock
        if not self._lock_for_direct():
            return False  # the loop is busy with the core: it takes this operation too
        try:
            core = self.core
            if core.state != CONNECTED or core.queue or core.write_blocked or core.close_error is not None:
                return False
            if self._direct_socket_locked() is not sock:
                return False
            # anything but PUBACKs waiting: the loop handles it, then this operation
            ok = self._send_waiting_pubacks(now)
            p = op.packet
            neg = core.negotiated
            if (ok and p.type == c.PUBLISH and p.qos  # type: ignore[attr-defined]
                    and neg is not None and core.inflight_qos1 >= neg.receive_maximum):
                ok = False  # flow control: it waits in the loop's queue
            if ok:
                core.submit(op, now)
            if core.output:
                self._send_locked(sock, self._take_output(core.output), ok and op.sent)  # (answered)
            if ok and op.deadline is not None:
                self._deadline_added(op.deadline)
            return ok
        finally:
            lock.release()

    def publish(self, p: mqtt5.PublishPacket) -> CrtFuture:
        if p.qos == 2:  # like the reference: accepted, then failed through the future
            fut = CrtFuture()
            fut.set_exception(_bad("AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION",
                                   "this client publishes at QoS 0 or 1 only"))
            return fut
        packet = publish_to_codec(p)
        if self.cfg.iot_core_limits:
            _check_iot_topic(packet.topic, "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION")
        return self._submit(packet, _puback_result)

    def subscribe(self, p: mqtt5.SubscribePacket) -> CrtFuture:
        packet = subscribe_to_codec(p)
        if self.cfg.iot_core_limits:
            err = "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"
            if len(packet.subscriptions) > 8:
                raise _bad(err, "AWS IoT Core allows at most 8 subscriptions per SUBSCRIBE")
            for sub in packet.subscriptions:
                _check_iot_topic(sub.topic_filter, err)
        return self._submit(packet, _suback_result)

    def unsubscribe(self, p: mqtt5.UnsubscribePacket) -> CrtFuture:
        packet = unsubscribe_to_codec(p)
        if self.cfg.iot_core_limits:
            for f in packet.topic_filters:
                _check_iot_topic(f, "AWS_ERROR_MQTT5_UNSUBSCRIBE_OPTIONS_VALIDATION")
        return self._submit(packet, _unsuback_result)

    def get_stats(self) -> mqtt5.OperationStatisticsData:
        # Read on the loop thread, after every operation posted before this call.
        stats = self.loop_thread.run_sync(self._stats, timeout=10.0)
        return m.OperationStatisticsData(*stats)

    def invoke_puback(self, control_id: int) -> None:
        pid = self.manual_pubacks.pop(control_id, None)
        if pid is None:
            raise error("AWS_ERROR_INVALID_ARGUMENT", "unknown or already used acknowledgement handle")
        self._post(("puback", pid))

    # -- loop side --------------------------------------------------------------------
    def terminate(self) -> None:
        """The Client was garbage collected: stop and fail whatever is still queued."""
        try:
            self._post(("terminate",))
        except Exception:  # noqa: BLE001 - the loop may already be gone at interpreter exit
            _log.debug("could not terminate the MQTT5 client", exc_info=True)

    def _start_on_loop(self) -> None:
        self.want_running = True
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = self.loop.create_task(self._run())

    def _stop_on_loop(self, packet: c.Disconnect | None) -> None:
        if not self.want_running:
            return
        self.want_running = False
        if self.wake is not None:
            self.wake.set()
        if self.protocol is not None:
            self.core.request_disconnect(packet)

    def after_core(self) -> None:
        """Carry out what the state machine asked for after any input."""
        core = self.core
        proto = self.protocol
        while core.output or self.rest or self.held:
            data = self._take_output(core.output)
            if proto is None or proto.transport is None or proto.transport.is_closing():
                break
            proto.transport.write(data)  # may pause writing: core.write_blocked
            if core.queue and not core.write_blocked and core.close_error is None:
                core.service(_MONO())  # the next batch, while the socket keeps up
        # The timer before the events: posting callbacks (waking user threads) is best
        # left as the loop's last work.
        self.timer.follow(core.next_deadline())
        if core.events:
            events = core.events
            core.events = []
            for ev in events:
                self._deliver(ev)
            # Delivering may have produced output (the PUBACK of a message nobody takes a
            # callback for): write it now, not at the next read or timer (maybe minutes).
            if core.output and proto is not None and proto.transport is not None \
                    and not proto.transport.is_closing():
                proto.transport.write(self._take_output(core.output))
        if (core.close_error is not None and proto is not None and proto.transport is not None
                and not proto.transport.is_closing()):
            proto.transport.close()

    def _on_timer(self) -> None:
        with self.lock:
            self.core.tick(_MONO())
            self.after_core()

    def _tcp_factory(self) -> asyncio.Protocol:
        return _Protocol(self, self.tls_ctx is None and self.proxy is None)

    def _ws_factory(self) -> asyncio.Protocol:
        from .ws5 import WsAdapter

        return WsAdapter(_Protocol(self, False), self.host, self.port, self.default_port,
                         self.opts.websocket_handshake_transform, self.client_ref, self.callbacks.post)

    def _deliver(self, ev: Any) -> None:
        o = self.opts
        fn: Any
        kind = ev.kind
        listeners = self.listeners
        if kind == "publish":
            if listeners:
                listeners.emit("on_publish", ev.a)
            self._deliver_publish(ev.a)
        elif kind == "connect_success":
            if listeners:
                listeners.emit("on_connected", bool(ev.b.rejoined_session))
            self.connected_at = _MONO()
            proto = self.protocol
            if proto is not None and self.loop_thread.in_thread():
                proto.enter_ep(stream.INLINE_READS)
            fn = o.on_lifecycle_event_connection_success_fn
            if fn is not None:
                self.callbacks.post(fn, m.LifecycleConnectSuccessData(connack_from_codec(ev.a),
                                                                      negotiated_from_core(ev.b)))
        elif kind == "connect_failure":
            if listeners:
                listeners.emit("on_connection_failure", ev.a, ev.b)
            fn = o.on_lifecycle_event_connection_failure_fn
            if fn is not None:
                self.callbacks.post(fn, m.LifecycleConnectFailureData(
                    connack_from_codec(ev.b) if ev.b is not None else None, ev.a))
        elif kind == "disconnection":
            if listeners:
                listeners.emit("on_disconnected", ev.a)
            fn = o.on_lifecycle_event_disconnection_fn
            if fn is not None:
                self.callbacks.post(fn, m.LifecycleDisconnectData(
                    disconnect_from_codec(ev.b) if ev.b is not None else None, ev.a))

    def _feed_inline(self, data: bytes) -> bool:
        """(a callback worker reading inline, under ``lock``; see crtpy._mqtt.stream)"""
        core = self.core
        core.data_received(data, _MONO())
        events = core.events
        if core.close_error is not None or self.listeners or any(ev.kind != "publish" for ev in events):
            self.loop_thread.loop.call_soon_threadsafe(self._inline_handback)
            return False
        if events:
            core.events = []
            for ev in events:
                self._deliver_publish(ev.a, True)
        if core.output or self.rest:
            self._write_inline()
        deadline = core.next_deadline()
        if deadline is not None:
            self._deadline_added(deadline)
        return True

    def _puback_inline(self, pid: int) -> None:
        """(a callback worker, after the callback of a message read inline) The
        automatic PUBACK waits in the inbox without waking anybody: the user's next
        direct send takes it along, else the reader sends it within
        ``_PUBACK_FLUSH_SEC`` (see ``_flush_inline``), or hands it to the loop when it
        stops reading."""
        if not self.incoming:
            self.inline_flush_at = _MONO() + _PUBACK_FLUSH_SEC
        self.incoming.append(("puback", pid))
        if self.callbacks.has_items() and not self.incoming_scheduled:
            # more callbacks run first (one may block): the reader would send it only
            # after them, so the loop does now
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)

    def _send_waiting_pubacks(self, now: float) -> bool:
        """(under ``lock``) Send the PUBACKs at the head of the inbox; True when the
        inbox is then empty (False: another item waits, in order, for the loop)."""
        incoming = self.incoming
        while incoming:
            item = incoming[0]
            if type(item) is not tuple or item[0] != "puback":
                return False
            incoming.popleft()
            self.core.send_puback(item[1], now)
        return True

    def _flush_inline(self) -> None:
        """(a reading worker) Send the PUBACKs waiting in the inbox (when the
        connection is quiet; else the loop does)."""
        with self.lock:
            core = self.core
            if core.state == CONNECTED and self._direct_socket_locked() is not None:
                self._send_waiting_pubacks(_MONO())
                if core.output:
                    self._write_inline()
        if self.incoming and not self.incoming_scheduled:
            self.incoming_scheduled = True
            self.loop_thread.call_soon(self._drain)

    def _deliver_publish(self, p: c.Publish, inline: bool = False) -> None:
        fn = self.on_publish
        if fn is None:
            if p.qos:
                self.core.send_puback(p.packet_id, _MONO())
            return
        pub = publish_from_codec(p)
        if p.qos == 0:
            self.callbacks.post(fn, m.PublishReceivedData(pub, None))
            return
        pid = p.packet_id
        driver = self
        if inline:
            post_puback = self._puback_inline
        else:
            post_puback = self._post_puback
            if not self.puback_flush_armed:
                self.puback_flush_armed = True
                self.loop.call_later(_PUBACK_FLUSH_SEC, self._flush_pubacks)

        def run() -> None:
            state = {"taken": False, "active": True}

            def acquire() -> m.PublishAcknowledgementControlHandle:
                if state["taken"]:
                    raise RuntimeError("acquire_publish_acknowledgement_control() may be called only once")
                if not state["active"]:
                    raise RuntimeError("acquire_publish_acknowledgement_control() must be called inside the callback")
                state["taken"] = True
                with driver.incoming_lock:
                    driver.puback_ids += 1
                    cid = driver.puback_ids
                driver.manual_pubacks[cid] = pid
                return m.PublishAcknowledgementControlHandle(cid)

            try:
                fn(m.PublishReceivedData(pub, acquire))
            finally:
                state["active"] = False
                if not state["taken"]:
                    post_puback(pid)

        self.callbacks.post(run)

    async def _run(self) -> None:
        o = self.opts
        fn: Any
        backoff = Backoff(self.min_delay, self.max_delay, self.jitter)
        try:
            while self.want_running:
                fn = o.on_lifecycle_event_attempting_connect_fn
                if fn is not None:
                    self.callbacks.post(fn, m.LifecycleAttemptingConnectData())
                self.connected_at = None
                try:
                    factory = self._ws_factory if self.websocket else self._tcp_factory
                    _transport, proto = await open_stream(
                        self.host, self.port, factory, proxy=self.proxy, bootstrap=self.bootstrap,
                        socket_options=self.socket_options, tls_ctx=self.tls_ctx, websocket=self.websocket)
                except Exception as e:  # noqa: BLE001 - reported through the lifecycle
                    with self.lock:
                        self.core.connection_lost(e)
                        self.after_core()
                else:
                    with self.lock:
                        self.protocol = proto
                        if not self.want_running:
                            self.core.request_disconnect(None)
                        else:
                            self.core.connection_opened(_MONO())
                        self.after_core()
                    exc = await proto.closed
                    with self.lock:
                        self.protocol = None
                        self.rest = self.held = b""  # an unsent remainder dies with its connection
                        self.timer.cancel()
                        self.core.connection_lost(exc)
                        self.after_core()
                if not self.want_running:
                    break
                if self.connected_at is not None and _MONO() - self.connected_at >= self.reset_after:
                    backoff.reset()
                assert self.wake is not None
                await wait_or_timeout(self.wake, backoff.next_delay())
        finally:
            self.core.stopping = False
            if self.listeners:
                self.listeners.emit("on_stopped")
            # Operations that the offline policy keeps stay queued for a later start().
            fn = o.on_lifecycle_event_stopped_fn
            if fn is not None:
                self.callbacks.post(fn, m.LifecycleStoppedData())


def _check_iot_topic(topic: str, err: str) -> None:
    """AWS IoT Core limits: 256 bytes, 8 levels (a ``$aws/rules/<name>/`` prefix and a
    ``$share/<group>/`` prefix do not count)."""
    t = topic
    for prefix, levels in (("$share/", 2), ("$aws/rules/", 3)):
        if t.lower().startswith(prefix):
            parts = t.split("/", levels)
            t = parts[levels] if len(parts) > levels else ""
    if len(t.encode("utf-8")) > 256:
        raise _bad(err, "topic longer than 256 bytes (AWS IoT Core limit)")
    if t.count("/") > 7:
        raise _bad(err, "topic with more than 8 levels (AWS IoT Core limit)")


def _approx_size(p: c.Packet) -> int:
    """The operation's size for get_stats, counted as the reference does: the encoded
    packet, without the packet id for PUBLISH (assigned only when it is sent)."""
    if p.type == c.PUBLISH:
        props = p.props  # type: ignore[attr-defined]
        plen = len(c.encode_properties(props, c.PUBLISH)) if props else 1
        remaining = 2 + len(p.topic.encode("utf-8")) + plen + len(p.payload)  # type: ignore[attr-defined]
        return 1 + c.varint_size(remaining) + remaining
    if p.packet_id == 0:  # type: ignore[attr-defined]
        p.packet_id = 1  # type: ignore[attr-defined]
        try:
            return len(c.encode(p, 5))
        finally:
            p.packet_id = 0  # type: ignore[attr-defined]
    return len(c.encode(p, 5))


_PUBACK_CODES: dict[int, Any] = {}


def _puback_result(p: c.Ack | None) -> mqtt5.PublishCompletionData:
    if p is None:
        return m.PublishCompletionData(m.PubackPacket())
    if not _PUBACK_CODES:
        _PUBACK_CODES.update({int(v): v for v in m.PubackReasonCode})
    pr = p.props
    if not pr:
        return m.PublishCompletionData(m.PubackPacket(_PUBACK_CODES.get(p.reason_code)))
    return m.PublishCompletionData(m.PubackPacket(
        _PUBACK_CODES.get(p.reason_code), pr.get(c.P_REASON_STRING), _ups_out(pr)))


def _suback_result(p: c.Suback) -> mqtt5.SubackPacket:
    pr = p.props
    return m.SubackPacket(pr.get(c.P_REASON_STRING), _ups_out(pr),
                          [_enum_or_none(m.SubackReasonCode, x) for x in p.reason_codes])


def _unsuback_result(p: c.Unsuback) -> mqtt5.UnsubackPacket:
    pr = p.props
    return m.UnsubackPacket(pr.get(c.P_REASON_STRING), _ups_out(pr),
                            [_enum_or_none(m.UnsubackReasonCode, x) for x in p.reason_codes])
