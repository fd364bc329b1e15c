"""The MQTT 3.1.1 client state machine, sans-I/O.

:class:`Core` is fed bytes (:meth:`Core.data_received`), time (:meth:`Core.tick`) and
connection events (:meth:`Core.connection_opened`, :meth:`Core.connection_lost`); it
produces bytes to write (``output``), events for the I/O driver (``events``), a request
to close the connection (``close_error``) and the time of its next deadline
(:meth:`Core.next_deadline`).  It never touches sockets, threads or clocks.

Behaviour (matching the reference client):

* operations made while offline wait in a queue and are sent after (re)connecting;
  QoS 0 publishes are the exception: they fail at once with
  ``AWS_ERROR_MQTT_NOT_CONNECTED``;
* when a connection is lost, operations sent but not acknowledged go back to the front
  of the queue; QoS 1 publishes are sent again with DUP set;
* a CONNACK after a reconnect with ``clean_session`` cancels the operations of the
  previous session (``AWS_ERROR_MQTT_CANCELLED_FOR_CLEAN_SESSION``);
* keep-alive: a PINGREQ every ``keep_alive`` seconds; no PINGRESP within the ping
  timeout closes the connection with ``AWS_ERROR_MQTT_TIMEOUT``;
* ``operation_timeout`` (when > 0) fails an operation whose acknowledgement does not
  arrive in time with ``AWS_ERROR_MQTT_TIMEOUT``.

Packet ids are handed out when an operation is created (the public API returns them
at once), so allocation is guarded by a lock: it is the one piece of this module that
other threads touch.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from .._errors import error
from .._mqtt import codec as c

# operation kinds
PUBLISH = 1
SUBSCRIBE = 2
UNSUBSCRIBE = 3

# connection states
OFFLINE = 0
CONNECTING = 1
CONNECTED = 2
CLOSING = 3

Done = Callable[[Any, BaseException | None], None]


class Op:
    """One operation: its encoded packet and a completion callback ``done(result, exc)``."""

    __slots__ = ("data", "deadline", "done", "kind", "pid", "qos", "sent", "session", "size", "topics")

    def __init__(self, kind: int, pid: int, data: bytes, done: Done, qos: int = 0,
                 topics: Any = None) -> None:
        self.kind = kind
        self.pid = pid
        self.data = data
        self.done = done
        self.qos = qos
        self.topics = topics  # SUBSCRIBE: [(filter, qos)], UNSUBSCRIBE: [filter]
        self.sent = False
        self.deadline = 0.0
        self.session = 0
        self.size = len(data) - _header_len(data)


def _header_len(data: bytes) -> int:
    i = 1
    while i < len(data) and data[i] & 0x80:
        i += 1
    return i + 1


class Event:
    __slots__ = ("a", "b", "kind")

    def __init__(self, kind: str, a: Any = None, b: Any = None) -> None:
        self.kind = kind
        self.a = a
        self.b = b

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {self.a!r}, {self.b!r})"


class Config:
    __slots__ = (
        "clean_session",
        "connack_timeout",
        "connect_bytes",
        "keep_alive",
        "operation_timeout",
        "ping_timeout",
    )

    def __init__(self, connect: c.Connect, ping_timeout: float, operation_timeout: float) -> None:
        self.connect_bytes = c.encode_connect(connect, 4)
        self.clean_session = connect.clean_start
        self.keep_alive = float(connect.keep_alive)
        self.ping_timeout = ping_timeout
        self.operation_timeout = operation_timeout
        self.connack_timeout = max(ping_timeout, 3.0)


class Core:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.state = OFFLINE
        self.output: list[bytes] = []
        self.events: list[Event] = []
        self.close_error: BaseException | None = None
        self.decoder: c.Decoder | None = None
        self.got_bytes = False
        self.queue: collections.deque[Op] = collections.deque()  # not yet sent
        self.inflight: dict[int, Op] = {}  # sent, waiting for an ack (insertion = send order)
        self.pid_lock = threading.Lock()
        self.pids_used: set[int] = set()
        self.next_pid = 1
        self.session = 0  # incremented by each CONNACK that starts a new session
        self.sessions_seen = 0
        self.incoming_qos2: set[int] = set()
        self.last_sent = 0.0
        self.ping_deadline: float | None = None
        self.connack_deadline: float | None = None

    # -- packet ids (any thread) ------------------------------------------------------
    def allocate_pid(self) -> int:
        with self.pid_lock:
            used = self.pids_used
            if len(used) >= 65535:
                raise error("AWS_ERROR_MQTT_QUEUE_FULL", "all 65535 packet ids are in use")
            pid = self.next_pid
            while pid in used:
                pid = pid + 1 if pid < 65535 else 1
            used.add(pid)
            self.next_pid = pid + 1 if pid < 65535 else 1
            return pid

    def _release(self, pid: int) -> None:
        with self.pid_lock:
            self.pids_used.discard(pid)

    # -- operations -------------------------------------------------------------------
    def submit(self, op: Op, now: float) -> None:
        op.session = self.session
        if self.state == CONNECTED and not self.queue:
            self._send(op, now)
            return
        if op.kind == PUBLISH and op.qos == 0:
            self._complete(op, None, error("AWS_ERROR_MQTT_NOT_CONNECTED"))
            return
        self.queue.append(op)

    def _send(self, op: Op, now: float) -> None:
        self.output.append(op.data)
        self.last_sent = now
        if op.kind == PUBLISH and op.qos == 0:
            self._complete(op, {"packet_id": op.pid}, None)
            return
        op.sent = True
        if self.cfg.operation_timeout > 0:
            op.deadline = now + self.cfg.operation_timeout
        self.inflight[op.pid] = op

    def _complete(self, op: Op, result: Any, exc: BaseException | None) -> None:
        self._release(op.pid)
        self.events.append(Event("done", op, (result, exc)))

    def _flush_queue(self, now: float) -> None:
        q = self.queue
        while q and self.state == CONNECTED:
            self._send(q.popleft(), now)

    def stats(self) -> tuple[int, int, int, int]:
        queued = list(self.queue)
        inflight = list(self.inflight.values())
        unacked_size = sum(o.size for o in inflight)
        return (len(queued) + len(inflight), sum(o.size for o in queued) + unacked_size,
                len(inflight), unacked_size)

    def fail_all(self, exc: BaseException) -> None:
        ops = list(self.inflight.values()) + list(self.queue)
        self.inflight.clear()
        self.queue.clear()
        for op in ops:
            self._complete(op, None, exc)

    # -- connection -------------------------------------------------------------------
    def connection_opened(self, now: float) -> None:
        self.state = CONNECTING
        self.close_error = None
        self.decoder = c.Decoder(4)
        self.got_bytes = False
        self.output.append(self.cfg.connect_bytes)
        self.last_sent = now
        self.connack_deadline = now + self.cfg.connack_timeout
        self.ping_deadline = None

    def request_disconnect(self) -> None:
        """Send DISCONNECT (if connected) and close."""
        if self.state == CONNECTED:
            self.output.append(b"\xe0\x00")
        self.state = CLOSING
        self._close(error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"))

    def _close(self, exc: BaseException) -> None:
        if self.close_error is None:
            self.close_error = exc

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport closed (or an attempt failed).  Sent, unacknowledged operations
        go back to the front of the queue, QoS 1 publishes marked DUP."""
        was_connected = self.state == CONNECTED
        self.state = OFFLINE
        self.decoder = None
        self.connack_deadline = None
        self.ping_deadline = None
        if self.inflight:
            ops = list(self.inflight.values())
            self.inflight.clear()
            for op in ops:
                op.sent = False
                if op.kind == PUBLISH and op.qos and not op.data[0] & 0x08:
                    b = bytearray(op.data)
                    b[0] |= 0x08
                    op.data = bytes(b)
            self.queue.extendleft(reversed(ops))
        reason = self.close_error if self.close_error is not None else exc
        if reason is None:
            reason = error("AWS_IO_SOCKET_CLOSED")
        elif not hasattr(reason, "name"):
            from .._net.connect import map_connect_error

            reason = map_connect_error(reason)
        reason.__traceback__ = None  # no frames kept alive by a reported error
        reason.__context__ = None
        reason.__cause__ = None
        self.events.append(Event("lost", reason, was_connected))

    # -- input ------------------------------------------------------------------------
    def data_received(self, data: bytes, now: float) -> None:
        dec = self.decoder
        if dec is None or self.close_error is not None:
            return
        if self.state == CONNECTING and not self.got_bytes and data:
            self.got_bytes = True
            if data[0] >> 4 != c.CONNACK:
                # Whatever the first packet is, it is not the CONNACK the protocol requires.
                self._close(error("AWS_ERROR_MQTT_PROTOCOL_ERROR", "the first packet from the server is not CONNACK"))
                return
        try:
            packets = dec.feed(data)
        except Exception as e:  # noqa: BLE001 - a decode error ends the connection
            self._close(e)
            return
        for p in packets:
            if self.close_error is not None:
                return
            self._handle(p, now)
        if dec.failed is not None:
            self._close(dec.failed)

    def _handle(self, p: c.Packet, now: float) -> None:
        t = p.type
        if self.state == CONNECTING:
            if t != c.CONNACK:
                self._close(error("AWS_ERROR_MQTT_PROTOCOL_ERROR", f"{c.PACKET_NAMES.get(t, t)} before CONNACK"))
                return
            self._on_connack(p, now)  # type: ignore[arg-type]
            return
        if t == c.PUBLISH:
            self._on_publish(p, now)  # type: ignore[arg-type]
        elif t == c.PUBACK or t == c.PUBCOMP:
            op = self.inflight.pop(p.packet_id, None)  # type: ignore[attr-defined]
            if op is not None:
                self._complete(op, {"packet_id": op.pid}, None)
        elif t == c.PUBREC:  # never expected: this client does not publish at QoS 2
            self.output.append(c.encode_ack(c.Ack(c.PUBREL, p.packet_id), 4))  # type: ignore[attr-defined]
        elif t == c.PUBREL:
            pid = p.packet_id  # type: ignore[attr-defined]
            self.incoming_qos2.discard(pid)
            self.output.append(c.encode_ack(c.Ack(c.PUBCOMP, pid), 4))
        elif t == c.SUBACK:
            self._on_suback(p)  # type: ignore[arg-type]
        elif t == c.UNSUBACK:
            op = self.inflight.pop(p.packet_id, None)  # type: ignore[attr-defined]
            if op is not None:
                self.events.append(Event("unsubscribed", op.topics))
                self._complete(op, {"packet_id": op.pid}, None)
        elif t == c.PINGRESP:
            self.ping_deadline = None
        else:
            self._close(error("AWS_ERROR_MQTT_PROTOCOL_ERROR",
                              f"unexpected {c.PACKET_NAMES.get(t, t)} from the server"))

    def _on_connack(self, p: c.Connack, now: float) -> None:
        self.connack_deadline = None
        if p.reason_code != 0:
            self.events.append(Event("refused", p.reason_code))
            self._close(error("AWS_ERROR_MQTT_PROTOCOL_ERROR",
                              f"the server refused the connection (return code {p.reason_code})"))
            return
        self.state = CONNECTED
        if not p.session_present:
            self.incoming_qos2.clear()
        if self.cfg.clean_session and self.sessions_seen:
            # The old session is gone: its operations are cancelled.
            self.session += 1
            exc = error("AWS_ERROR_MQTT_CANCELLED_FOR_CLEAN_SESSION")
            ops = list(self.queue)
            self.queue.clear()
            for op in ops:
                self._complete(op, None, exc)
        self.sessions_seen += 1
        self.events.append(Event("connected", p.session_present))
        self._flush_queue(now)

    def _on_publish(self, p: c.Publish, now: float) -> None:
        qos = p.qos
        if qos == 1:
            self.output.append(b"\x40\x02" + p.packet_id.to_bytes(2, "big"))
        elif qos == 2:
            self.output.append(b"\x50\x02" + p.packet_id.to_bytes(2, "big"))
            if p.packet_id in self.incoming_qos2:
                return  # already delivered
            self.incoming_qos2.add(p.packet_id)
        self.events.append(Event("publish", p))

    def _on_suback(self, p: c.Suback) -> None:
        op = self.inflight.pop(p.packet_id, None)
        if op is None:
            return
        topics = op.topics or []
        codes = list(p.reason_codes)
        if len(codes) != len(topics):
            self._complete(op, None, error("AWS_ERROR_MQTT_PROTOCOL_ERROR", "SUBACK with the wrong number of codes"))
            self._close(error("AWS_ERROR_MQTT_PROTOCOL_ERROR", "SUBACK with the wrong number of codes"))
            return
        granted: list[tuple[str, int | None]] = []
        for (f, _q), code in zip(topics, codes):
            if code == 0x80:
                self.events.append(Event("rejected", f))
                granted.append((f, None))
            else:
                granted.append((f, code))
        self._complete(op, granted, None)

    # -- time -------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        ds = []
        if self.connack_deadline is not None:
            ds.append(self.connack_deadline)
        if self.state == CONNECTED:
            if self.ping_deadline is not None:
                ds.append(self.ping_deadline)
            elif self.cfg.keep_alive > 0:
                ds.append(self.last_sent + self.cfg.keep_alive)
        if self.cfg.operation_timeout > 0 and self.inflight:
            ds.append(min(op.deadline for op in self.inflight.values()))
        return min(ds) if ds else None

    def tick(self, now: float) -> None:
        if self.connack_deadline is not None and now >= self.connack_deadline:
            self.connack_deadline = None
            self._close(error("AWS_ERROR_MQTT_TIMEOUT", "no CONNACK in time"))
            return
        if self.state != CONNECTED:
            return
        if self.ping_deadline is not None:
            if now >= self.ping_deadline:
                self.ping_deadline = None
                self._close(error("AWS_ERROR_MQTT_TIMEOUT", "no PINGRESP within the ping timeout"))
                return
        elif self.cfg.keep_alive > 0 and now >= self.last_sent + self.cfg.keep_alive:
            self.output.append(c.PINGREQ_BYTES)
            self.last_sent = now
            self.ping_deadline = now + self.cfg.ping_timeout
        if self.cfg.operation_timeout > 0 and self.inflight:
            expired = [op for op in self.inflight.values() if op.deadline <= now]
            for op in expired:
                del self.inflight[op.pid]
                self._complete(op, None, error("AWS_ERROR_MQTT_TIMEOUT", "no acknowledgement in time"))
