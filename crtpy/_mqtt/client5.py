"""The MQTT 5 client state machine, sans-I/O.

:class:`Core` holds one client's protocol state across connections: the operation queue,
the operations waiting for acknowledgements, packet ids, flow control, topic aliases,
keep-alive and timeouts.  The driver (``driver5``) feeds it the transport's events and
the time, and carries out what it asks:

* ``core.output`` - bytes to write (a list of chunks the driver takes and clears);
* ``core.close_error`` - when set, the driver must close the transport and then call
  :meth:`Core.connection_lost`;
* ``core.events`` - lifecycle and received-message events for the user's callbacks;
* :meth:`Core.next_deadline` - when :meth:`Core.tick` must next be called.

Operations complete through their ``on_done(result, exception)`` callables, set by the
driver.  Nothing here blocks, sleeps or touches a socket.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from .._errors import error
from . import codec as c

_log = logging.getLogger("crtpy.mqtt5")

# connection states
DISCONNECTED = 0
CONNECTING = 1      # transport open, CONNECT sent, waiting for CONNACK
CONNECTED = 2
CLOSING = 3         # DISCONNECT sent or close requested

# offline queue behaviours (values of ClientOperationQueueBehaviorType)
FAIL_NON_QOS1_PUBLISH = 1
FAIL_QOS0_PUBLISH = 2
FAIL_ALL = 3

# outbound topic alias behaviours
ALIAS_MANUAL = 1
ALIAS_LRU = 2
ALIAS_DISABLED = 3

DEFAULT_KEEP_ALIVE_SEC = 1200
_PACKET_IDS = 65535  # packet identifiers 1..65535
DEFAULT_PING_TIMEOUT_MS = 30_000
DEFAULT_CONNACK_TIMEOUT_MS = 20_000
DEFAULT_OUTBOUND_ALIAS_CACHE = 25
DEFAULT_INBOUND_ALIAS_CACHE = 25
MAXIMUM_PACKET_SIZE_DEFAULT = c.MAX_VARINT + 5
OUTPUT_BATCH_BYTES = 256 * 1024


class Op:
    """One user operation: a PUBLISH, SUBSCRIBE or UNSUBSCRIBE."""

    __slots__ = ("deadline", "on_done", "packet", "sent", "size")

    def __init__(self, packet: c.Packet, on_done: Callable[[Any, BaseException | None], None],
                 size: int) -> None:
        self.packet = packet
        self.on_done = on_done
        self.size = size
        self.deadline: float | None = None
        self.sent = False

    @property
    def is_qos0_publish(self) -> bool:
        p = self.packet
        return p.type == c.PUBLISH and p.qos == 0  # type: ignore[attr-defined]

    @property
    def is_qos1_publish(self) -> bool:
        p = self.packet
        return p.type == c.PUBLISH and p.qos > 0  # type: ignore[attr-defined]


class Config:
    """Everything the state machine needs from ClientOptions, in protocol terms."""

    def __init__(self) -> None:
        self.connect = c.Connect(5)
        self.session_behavior = 1          # CLEAN
        self.offline_queue = FAIL_QOS0_PUBLISH
        self.ping_timeout = DEFAULT_PING_TIMEOUT_MS / 1000.0
        self.connack_timeout = DEFAULT_CONNACK_TIMEOUT_MS / 1000.0
        self.ack_timeout: float | None = None
        self.outbound_alias = ALIAS_DISABLED
        self.outbound_alias_cache = DEFAULT_OUTBOUND_ALIAS_CACHE
        self.inbound_alias_max = 0
        self.maximum_packet_size_from_server = MAXIMUM_PACKET_SIZE_DEFAULT
        self.iot_core_limits = False


class Negotiated:
    """Negotiated settings of one connection (protocol view of NegotiatedSettings)."""

    __slots__ = (
        "client_id",
        "keep_alive",
        "maximum_packet_size",
        "maximum_qos",
        "receive_maximum",
        "rejoined_session",
        "retain_available",
        "session_expiry",
        "shared_available",
        "sub_ids_available",
        "topic_alias_maximum_to_client",
        "topic_alias_maximum_to_server",
        "wildcard_available",
    )
    maximum_qos: int
    session_expiry: int
    receive_maximum: int
    maximum_packet_size: int
    topic_alias_maximum_to_server: int
    topic_alias_maximum_to_client: int
    keep_alive: int
    retain_available: bool
    wildcard_available: bool
    sub_ids_available: bool
    shared_available: bool
    rejoined_session: bool
    client_id: str


class Event:
    __slots__ = ("a", "b", "kind")

    def __init__(self, kind: str, a: Any = None, b: Any = None) -> None:
        self.kind = kind
        self.a = a
        self.b = b

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {self.a!r}, {self.b!r})"


class Core:
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.state = DISCONNECTED
        self.output: list[bytes] = []
        self.events: list[Event] = []
        self.close_error: BaseException | None = None
        self.queue: collections.deque[Op] = collections.deque()       # not yet sent
        self.unacked: dict[int, Op] = {}                   # sent, waiting for an ack
        self.inflight_qos1 = 0
        self.next_packet_id = 1
        self.negotiated: Negotiated | None = None
        self.decoder: c.Decoder | None = None
        self.has_connected_once = False
        self.connack_deadline: float | None = None
        self.ping_due: float | None = None
        self.ping_deadline: float | None = None
        self.last_write = 0.0
        self.alias_out: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.alias_manual: dict[int, str] = {}
        self.alias_in: dict[int, str] = {}
        self.disconnect_received: c.Disconnect | None = None
        self.stopping = False
        self.pending_disconnect: c.Disconnect | None = None
        self.incomplete_size = 0
        self.connected_on_transport = False
        self.failure_reported = False
        # Set by the driver while the transport's write buffer is full (back-pressure).
        self.write_blocked = False

    # -- helpers ----------------------------------------------------------------------
    def _write(self, data: bytes, now: float) -> None:
        self.output.append(data)
        self.last_write = now
        if self.negotiated is not None and self.negotiated.keep_alive and self.ping_deadline is None:
            self.ping_due = now + self.negotiated.keep_alive

    def _fail_connection(self, exc: BaseException, reason: int | None = None, now: float = 0.0,
                         while_connecting: bool = False) -> None:
        """Ask the driver to close; optionally send a DISCONNECT with ``reason`` first
        (once connected, or ``while_connecting`` for a packet that came before CONNACK)."""
        if self.close_error is not None:
            return
        if reason is not None and (self.state == CONNECTED or (while_connecting and self.state == CONNECTING)):
            self.output.append(c.encode_disconnect(c.Disconnect(reason)))
        self.close_error = exc
        self.state = CLOSING

    def _alloc_packet_id(self) -> int:
        pid = self.next_packet_id
        for _ in range(65535):
            if pid not in self.unacked:
                break
            pid = pid + 1 if pid < 65535 else 1
        else:  # (not reached: _service waits while every identifier is in use)
            raise error("AWS_ERROR_MQTT_QUEUE_FULL", "no free packet identifier")
        self.next_packet_id = pid + 1 if pid < 65535 else 1
        return pid

    def _complete(self, op: Op, result: Any, exc: BaseException | None) -> None:
        self.incomplete_size -= op.size
        try:
            op.on_done(result, exc)
        except Exception:  # noqa: BLE001 - completion callbacks are crtpy's own
            _log.exception("operation completion failed")

    def _offline_fails(self, op: Op) -> bool:
        mode = self.cfg.offline_queue
        if op.is_qos1_publish:
            return mode == FAIL_ALL
        if op.is_qos0_publish:
            return True
        return mode != FAIL_QOS0_PUBLISH

    # -- operations -------------------------------------------------------------------
    def submit(self, op: Op, now: float, service: bool = True) -> None:
        """Queue ``op``; with ``service`` False the caller calls :meth:`service` later
        (once for a batch)."""
        if self.state != CONNECTED:
            if self._offline_fails(op):
                op.on_done(None, error("AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"))
                return
            self.incomplete_size += op.size
            self.queue.append(op)
            return
        self.incomplete_size += op.size
        self.queue.append(op)
        if service:
            self._service(now)

    def service(self, now: float) -> None:
        if self.state == CONNECTED and self.queue:
            self._service(now)

    def _service(self, now: float) -> None:
        """Send queued operations while flow control allows."""
        if self.write_blocked:
            return
        neg = self.negotiated
        assert neg is not None
        queue = self.queue
        out = self.output
        receive_max = neg.receive_maximum
        ack_timeout = self.cfg.ack_timeout
        wrote = False
        budget = OUTPUT_BATCH_BYTES  # hand the driver at most about this much per call
        unacked = self.unacked
        while queue and budget > 0:
            op = queue[0]
            p = op.packet
            if len(unacked) >= _PACKET_IDS and (
                    (p.qos and not op.sent) if p.type == c.PUBLISH else not p.packet_id):  # type: ignore[attr-defined]
                break  # every packet id is in use: like flow control, wait for an ack
            if p.type == c.PUBLISH:
                qos = p.qos  # type: ignore[attr-defined]
                if qos and self.inflight_qos1 >= receive_max:
                    break
                queue.popleft()
                try:
                    data = self._encode_publish(op, p, neg)  # type: ignore[arg-type]
                except BaseException as e:  # noqa: BLE001 - validation failure fails the op
                    self._complete(op, None, e)
                    continue
                if data is None:
                    continue
                out.append(data)
                budget -= len(data)
                wrote = True
                if qos:
                    self.inflight_qos1 += 1
                    self.unacked[p.packet_id] = op  # type: ignore[attr-defined]
                    op.sent = True
                    if ack_timeout:
                        op.deadline = now + ack_timeout
                else:
                    self._complete(op, None, None)
            else:
                queue.popleft()
                if not p.packet_id:  # type: ignore[attr-defined]
                    p.packet_id = self._alloc_packet_id()  # type: ignore[attr-defined]
                data = c.encode(p, 5)
                if len(data) > neg.maximum_packet_size:
                    self._complete(op, None, error("AWS_ERROR_MQTT5_PACKET_VALIDATION",
                                                   "packet exceeds the server's maximum packet size"))
                    continue
                out.append(data)
                budget -= len(data)
                wrote = True
                self.unacked[p.packet_id] = op  # type: ignore[attr-defined]
                op.sent = True
                if ack_timeout:
                    op.deadline = now + ack_timeout
        if wrote:
            self.last_write = now
            if neg.keep_alive and self.ping_deadline is None:
                self.ping_due = now + neg.keep_alive

    def _encode_publish(self, op: Op, p: c.Publish, neg: Negotiated) -> bytes | None:
        if p.qos > neg.maximum_qos:
            self._complete(op, None, error("AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION",
                                           "QoS exceeds the server's maximum QoS"))
            return None
        if p.retain and not neg.retain_available:
            self._complete(op, None, error("AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION",
                                           "the server does not support retained messages"))
            return None
        if p.qos and not op.sent:
            p.packet_id = self._alloc_packet_id()
        topic = p.topic
        alias_mode = self.cfg.outbound_alias
        props = p.props
        wire = p
        if alias_mode == ALIAS_LRU and neg.topic_alias_maximum_to_server and topic:
            cache = self.alias_out
            alias = cache.get(topic)
            if alias is not None:
                cache.move_to_end(topic)
                wire = c.Publish("", p.payload, p.qos, p.retain, p.dup, p.packet_id,
                                 {**props, c.P_TOPIC_ALIAS: alias})
            else:
                size = min(self.cfg.outbound_alias_cache, neg.topic_alias_maximum_to_server)
                if len(cache) >= size:
                    _, alias = cache.popitem(last=False)
                else:
                    alias = len(cache) + 1
                cache[topic] = alias
                wire = c.Publish(topic, p.payload, p.qos, p.retain, p.dup, p.packet_id,
                                 {**props, c.P_TOPIC_ALIAS: alias})
        elif alias_mode == ALIAS_MANUAL and props.get(c.P_TOPIC_ALIAS):
            alias = props[c.P_TOPIC_ALIAS]
            if alias > neg.topic_alias_maximum_to_server:
                self._complete(op, None, error("AWS_ERROR_MQTT5_INVALID_OUTBOUND_TOPIC_ALIAS",
                                               "topic alias exceeds the server's topic alias maximum"))
                return None
            if self.alias_manual.get(alias) == topic:
                wire = c.Publish("", p.payload, p.qos, p.retain, p.dup, p.packet_id, props)
            else:
                self.alias_manual[alias] = topic
        elif props and c.P_TOPIC_ALIAS in props:
            wire = c.Publish(topic, p.payload, p.qos, p.retain, p.dup, p.packet_id,
                             {k: v for k, v in props.items() if k != c.P_TOPIC_ALIAS})
        data = c.encode_publish(wire, 5)
        if len(data) > neg.maximum_packet_size:
            self._complete(op, None, error("AWS_ERROR_MQTT5_PACKET_VALIDATION",
                                           "PUBLISH exceeds the server's maximum packet size"))
            return None
        return data

    def send_puback(self, packet_id: int, now: float) -> None:
        if self.state == CONNECTED:
            self._write(c.encode_ack(c.Ack(c.PUBACK, packet_id)), now)

    # -- connection lifecycle ---------------------------------------------------------
    def connection_opened(self, now: float) -> None:
        """The transport is up: send CONNECT and wait for the CONNACK."""
        cfg = self.cfg
        self.state = CONNECTING
        self.write_blocked = False
        self.close_error = None
        self.disconnect_received = None
        self.decoder = c.Decoder(5, cfg.maximum_packet_size_from_server)
        conn = cfg.connect
        behavior = cfg.session_behavior
        conn.clean_start = not (behavior == 3 or (behavior == 2 and self.has_connected_once))
        self.output.append(c.encode_connect(conn))
        self.connack_deadline = now + cfg.connack_timeout
        self.last_write = now

    def data_received(self, data: bytes, now: float) -> None:
        if self.close_error is not None or self.decoder is None:
            return
        try:
            packets = self.decoder.feed(data)
        except BaseException as e:  # noqa: BLE001 - decode errors end the connection
            self._fail_connection(e, 0x82 if e.name != "AWS_ERROR_MQTT_BUFFER_TOO_BIG" else 0x95)  # type: ignore[attr-defined]
            return
        for p in packets:
            if self.close_error is not None:
                return
            self._handle(p, now)
        failed = self.decoder.failed if self.decoder is not None else None
        if failed is not None and self.close_error is None:
            self._fail_connection(failed, 0x82 if failed.name != "AWS_ERROR_MQTT_BUFFER_TOO_BIG" else 0x95)  # type: ignore[attr-defined]
            return
        if self.state == CONNECTED and self.queue:
            self._service(now)

    def _handle(self, p: c.Packet, now: float) -> None:
        t = p.type
        if self.state == CONNECTING:
            if t == c.CONNACK:
                self._on_connack(p, now)  # type: ignore[arg-type]
            elif t == c.DISCONNECT:
                self.disconnect_received = p  # type: ignore[assignment]
                self._fail_connection(error("AWS_ERROR_MQTT5_DISCONNECT_RECEIVED"))
            else:
                self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                            f"{c.PACKET_NAMES[t]} received before CONNACK"),
                                      0x82, while_connecting=True)
            return
        if t == c.PUBACK:
            self._on_ack(p, now)
        elif t == c.PUBLISH:
            self._on_publish(p, now)  # type: ignore[arg-type]
        elif t in (c.SUBACK, c.UNSUBACK):
            self._on_ack(p, now)
        elif t == c.PINGRESP:
            self.ping_deadline = None
            if self.negotiated is not None and self.negotiated.keep_alive:
                self.ping_due = self.last_write + self.negotiated.keep_alive
        elif t == c.DISCONNECT:
            self.disconnect_received = p  # type: ignore[assignment]
            self._fail_connection(error("AWS_ERROR_MQTT5_DISCONNECT_RECEIVED"))
        elif t in (c.PUBREC, c.PUBREL, c.PUBCOMP):
            # QoS 2 is never requested by this client.
            self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                        f"unexpected {c.PACKET_NAMES[t]}"), 0x82)
        else:
            self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                        f"unexpected {c.PACKET_NAMES[t]} from the server"), 0x82)

    def _on_connack(self, p: c.Connack, now: float) -> None:
        self.connack_deadline = None
        if p.reason_code >= 0x80:
            self.events.append(Event("connect_failure",
                                     error("AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED"), p))
            self.close_error = error("AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED")
            self.state = CLOSING
            self.failure_reported = True
            return
        cfg = self.cfg
        conn = cfg.connect
        pr = p.props
        n = Negotiated()
        n.maximum_qos = pr.get(c.P_MAXIMUM_QOS, 1)
        requested: int = conn.props.get(c.P_SESSION_EXPIRY_INTERVAL, 0)
        n.session_expiry = pr.get(c.P_SESSION_EXPIRY_INTERVAL, requested)
        n.receive_maximum = pr.get(c.P_RECEIVE_MAXIMUM, 65535)
        n.maximum_packet_size = pr.get(c.P_MAXIMUM_PACKET_SIZE, MAXIMUM_PACKET_SIZE_DEFAULT)
        n.topic_alias_maximum_to_server = pr.get(c.P_TOPIC_ALIAS_MAXIMUM, 0)
        n.topic_alias_maximum_to_client = cfg.inbound_alias_max
        n.keep_alive = pr.get(c.P_SERVER_KEEP_ALIVE, conn.keep_alive)
        n.retain_available = bool(pr.get(c.P_RETAIN_AVAILABLE, 1))
        n.wildcard_available = bool(pr.get(c.P_WILDCARD_SUBSCRIPTION_AVAILABLE, 1))
        n.sub_ids_available = bool(pr.get(c.P_SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1))
        n.shared_available = bool(pr.get(c.P_SHARED_SUBSCRIPTION_AVAILABLE, 1))
        n.rejoined_session = bool(p.session_present)
        n.client_id = pr.get(c.P_ASSIGNED_CLIENT_IDENTIFIER, conn.client_id)
        self.negotiated = n
        self.state = CONNECTED
        self.connected_on_transport = True
        self.has_connected_once = True
        self.alias_out.clear()
        self.alias_manual.clear()
        self.alias_in.clear()
        self.ping_deadline = None
        self.ping_due = now + n.keep_alive if n.keep_alive else None
        # Unacknowledged operations from the previous connection go first; QoS 1
        # publishes are re-sent with DUP when the session was resumed.
        resend = list(self.unacked.values())  # insertion order = original send order
        self.unacked.clear()
        self.inflight_qos1 = 0
        front = []
        for op in resend:
            pk = op.packet
            if pk.type == c.PUBLISH:
                if n.rejoined_session:
                    pk.dup = True  # type: ignore[attr-defined]
                else:
                    op.sent = False
                    pk.dup = False  # type: ignore[attr-defined]
            else:
                pk.packet_id = 0  # type: ignore[attr-defined]
            front.append(op)
        self.queue.extendleft(reversed(front))
        self.events.append(Event("connect_success", p, n))
        self._service(now)

    def _on_ack(self, p: Any, now: float) -> None:
        op = self.unacked.pop(p.packet_id, None)
        if op is None or op.packet.type + 1 != p.type:
            if op is not None:
                self.unacked[p.packet_id] = op
            # An ack for an operation we gave up on (timeout): ignore it.
            return
        if p.type == c.PUBACK:
            self.inflight_qos1 -= 1
        self._complete(op, p, None)

    def _on_publish(self, p: c.Publish, now: float) -> None:
        alias = p.props.get(c.P_TOPIC_ALIAS)
        if alias is not None:
            if alias > self.cfg.inbound_alias_max:
                # (named and coded as the reference reports it: a protocol error)
                self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                            f"topic alias {alias} exceeds the maximum we announced"), 0x82)
                return
            if p.topic:
                self.alias_in[alias] = p.topic
            else:
                topic = self.alias_in.get(alias)
                if topic is None:
                    self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                                f"topic alias {alias} was never defined"), 0x82)
                    return
                p.topic = topic
        elif not p.topic:
            self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                        "PUBLISH without topic or topic alias"), 0x82)
            return
        if p.qos == 2:
            self._fail_connection(error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR",
                                        "QoS 2 PUBLISH was not requested"), 0x9B)
            return
        self.events.append(Event("publish", p))

    def tick(self, now: float) -> None:
        if self.close_error is not None:
            return
        if self.state == CONNECTING:
            if self.connack_deadline is not None and now >= self.connack_deadline:
                self._fail_connection(error("AWS_ERROR_MQTT5_CONNACK_TIMEOUT"))
            return
        if self.state != CONNECTED:
            return
        if self.ping_deadline is not None and now >= self.ping_deadline:
            self._fail_connection(error("AWS_ERROR_MQTT5_PING_RESPONSE_TIMEOUT"))
            return
        if self.ping_due is not None and now >= self.ping_due and self.ping_deadline is None:
            self.output.append(c.PINGREQ_BYTES)
            self.last_write = now
            self.ping_deadline = now + self.cfg.ping_timeout
            self.ping_due = None
        if self.cfg.ack_timeout:
            expired = [pid for pid, op in self.unacked.items()
                       if op.deadline is not None and now >= op.deadline]
            for pid in expired:
                op = self.unacked.pop(pid)
                if op.is_qos1_publish:
                    self.inflight_qos1 -= 1
                self._complete(op, None, error("AWS_ERROR_MQTT_TIMEOUT"))
            if expired and self.queue:
                self._service(now)

    def next_deadline(self) -> float | None:
        ds = []
        if self.state == CONNECTING:
            if self.connack_deadline is not None:
                ds.append(self.connack_deadline)
        elif self.state == CONNECTED:
            if self.ping_deadline is not None:
                ds.append(self.ping_deadline)
            elif self.ping_due is not None:
                ds.append(self.ping_due)
            if self.cfg.ack_timeout and self.unacked:
                ds.append(min((op.deadline for op in self.unacked.values() if op.deadline is not None),
                              default=float("inf")))
        return min(ds) if ds else None

    def request_disconnect(self, packet: c.Disconnect | None) -> None:
        """The user stopped the client: send ``packet`` if connected, then close."""
        self.stopping = True
        if self.close_error is not None:
            return
        if packet is not None and self.state == CONNECTED and self._disconnect_allowed(packet):
            self.output.append(c.encode_disconnect(packet))
        self.close_error = error("AWS_ERROR_MQTT5_USER_REQUESTED_STOP")
        self.state = CLOSING

    def _disconnect_allowed(self, packet: c.Disconnect) -> bool:
        """A client may not raise the session expiry from 0 in its DISCONNECT (MQTT 5
        section 3.14.2.2.2); like the reference, such a DISCONNECT is not sent at all."""
        requested = packet.props.get(c.P_SESSION_EXPIRY_INTERVAL)
        if not requested:
            return True
        negotiated = self.negotiated.session_expiry if self.negotiated is not None else 0
        if negotiated == 0:
            _log.debug("DISCONNECT not sent: session expiry cannot be raised from 0")
            return False
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport closed (or could not be opened): settle the lifecycle."""
        reason = self.close_error or exc or error("AWS_IO_SOCKET_CLOSED")  # as the reference reports a clean close
        if self.connected_on_transport:
            self.events.append(Event("disconnection", reason, self.disconnect_received))
        elif not self.failure_reported:
            self.events.append(Event("connect_failure", reason, None))
        self.failure_reported = False
        self.connected_on_transport = False
        self.state = DISCONNECTED
        self.negotiated = None
        self.decoder = None
        self.connack_deadline = None
        self.ping_due = self.ping_deadline = None
        self.close_error = None
        self._apply_offline_policy()

    def _apply_offline_policy(self) -> None:
        keep_unacked: dict[int, Op] = {}
        for pid, op in self.unacked.items():
            if op.is_qos1_publish or not self._offline_fails(op):
                keep_unacked[pid] = op
            else:
                self._complete(op, None, error("AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"))
        self.unacked = keep_unacked
        self.inflight_qos1 = 0
        if self.queue:
            kept: collections.deque[Op] = collections.deque()
            for op in self.queue:
                if self._offline_fails(op):
                    self._complete(op, None, error("AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"))
                else:
                    kept.append(op)
            self.queue = kept

    def fail_all(self, exc: BaseException) -> None:
        """The client is going away: fail every operation."""
        ops = list(self.unacked.values()) + list(self.queue)
        self.unacked.clear()
        self.queue.clear()
        self.inflight_qos1 = 0
        for op in ops:
            self._complete(op, None, exc)

    def stats(self) -> tuple[int, int, int, int]:
        unacked_size = sum(op.size for op in self.unacked.values())
        return (len(self.queue) + len(self.unacked), self.incomplete_size,
                len(self.unacked), unacked_size)
