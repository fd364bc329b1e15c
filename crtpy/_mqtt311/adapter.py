"""The MQTT 3.1.1 API (``crtpy.mqtt.Connection``) on top of an MQTT 5 client.

``mqtt5.Client.new_connection()`` (or ``mqtt.Connection(client=<mqtt5.Client>)``) gives a
Connection whose work is done by the MQTT 5 client's driver (``crtpy._mqtt.driver5``):
there is no second protocol implementation here.  This module only

- maps ``connect``/``disconnect`` onto start/stop of the shared MQTT 5 client (applying
  the Connection's client id, keep-alive, ping timeout and clean-session setting first);
- turns the MQTT 5 lifecycle events (seen on the loop thread as a listener of the
  driver, ``crtpy._mqtt.listeners``) into the 3.1.1 callbacks: success, failure, interrupted,
  resumed, closed;
- submits PUBLISH/SUBSCRIBE/UNSUBSCRIBE to the MQTT 5 client's operation queue and turns
  their results into the 3.1.1 result dicts, with packet ids of the adapter's own;
- dispatches received messages to the 3.1.1 subscription callbacks and ``on_message``.

Behaviour learnt from the reference adapter: the host, port, TLS, proxy, WebSocket,
will, username/password, socket options and reconnect delays of the MQTT 5 client are
used (the Connection's own are ignored); QoS 0 publishes while offline fail with the
MQTT 5 offline-queue error; ``disconnect()`` always completes with ``{}``; a
``connect()`` while the MQTT 5 client is already connected resets that connection
(``AWS_ERROR_MQTT_CONNECTION_RESET_FOR_ADAPTER_CONNECT``) so the settings apply; every
failed reconnect is reported to ``on_connection_failure``; stopping the MQTT 5 client
directly interrupts and closes the adapter.

Deliberate difference: when the first ``connect()`` of an adapter fails and it was the
adapter that started the MQTT 5 client, the client is stopped again (as a 3.1.1
connection does); the reference leaves it retrying in the background.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import error
from .._mqtt import codec as c
from .._mqtt.listeners import ListenerSet, ProtocolListener
from .._runtime.futures import CrtFuture
from .driver import SubTable, SubTableUser

if TYPE_CHECKING:
    from .._mqtt.driver5 import ClientDriver

# adapter states (loop thread only)
IDLE = 0         # not connected through this adapter
CONNECTING = 1   # connect() called, waiting for the first CONNACK
CONNECTED = 2    # connected, or reconnecting after an interruption


def _detached(exc: BaseException | None) -> BaseException | None:
    if exc is not None:
        exc.__traceback__ = None
        exc.__context__ = None
        exc.__cause__ = None
    return exc


class Adapter(ProtocolListener, SubTableUser):
    """One 3.1.1 Connection over an MQTT 5 client: a listener of that client's driver."""

    def __init__(self, conn: Any, driver5: ClientDriver, table: SubTable) -> None:
        self.conn_ref = weakref.ref(conn)
        self.d = driver5
        self.table = weakref.ref(table)
        self.callbacks = driver5.callbacks  # one queue: 3.1.1 and MQTT 5 callbacks stay in order
        self.state = IDLE
        self.connected = False
        self.started_client = False
        self.connect_future: CrtFuture | None = None
        self.disconnect_futures: list[CrtFuture] = []
        self.pid_lock = threading.Lock()
        self.next_pid = 0
        # listeners of this Connection (request-response), told on the loop thread
        self.listeners = ListenerSet()
        driver5._add_listener(self)  # held weakly by the driver; the Connection keeps us

    # -- helpers ------------------------------------------------------------------------
    def allocate_pid(self) -> int:
        with self.pid_lock:
            pid = self.next_pid % 65535 + 1
            self.next_pid = pid
            return pid

    def _lifecycle(self, name: str, *args: Any) -> None:
        conn = self.conn_ref()
        if conn is not None:
            self.callbacks.post(getattr(conn, name), *args)

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread, under the driver's lock (it touches the core).
        It goes through the driver's inbox, not straight to the loop: an operation
        submitted after it must not be sent (directly, from its thread) before it runs."""
        self.d._post(("call", fn))

    # -- lifecycle (user threads) -------------------------------------------------------
    def connect(self, fut: CrtFuture, settings: dict[str, Any]) -> None:
        self._post(lambda: self._connect_on_loop(fut, settings))

    def disconnect(self, fut: CrtFuture) -> None:
        self._post(lambda: self._disconnect_on_loop(fut))

    # -- lifecycle (loop thread) --------------------------------------------------------
    def _apply(self, s: dict[str, Any]) -> None:
        cfg = self.d.cfg
        cfg.connect.client_id = s["client_id"]
        cfg.connect.keep_alive = s["keep_alive"]
        cfg.ping_timeout = s["ping_timeout"]
        if s["clean_session"]:
            if cfg.session_behavior == 3:  # REJOIN_ALWAYS -> a clean session each time
                cfg.session_behavior = 1
        else:
            cfg.session_behavior = 3

    def _connect_on_loop(self, fut: CrtFuture, settings: dict[str, Any]) -> None:
        if self.state != IDLE:
            fut.try_set_exception(error("AWS_ERROR_MQTT_ALREADY_CONNECTED"))
            return
        d = self.d
        self._apply(settings)
        self.state = CONNECTING
        self.connect_future = fut
        if d.want_running:
            self.started_client = False
            proto = d.protocol
            if proto is not None and proto.transport is not None and not proto.transport.is_closing():
                # Reconnect so that this adapter's settings take effect.
                d.core.close_error = error("AWS_ERROR_MQTT_CONNECTION_RESET_FOR_ADAPTER_CONNECT")
                d.after_core()
        else:
            self.started_client = True
            d._start_on_loop()
            d.after_core()

    def _disconnect_on_loop(self, fut: CrtFuture) -> None:
        d = self.d
        pending = self.connect_future
        if pending is not None:
            self.connect_future = None
            pending.try_set_exception(error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"))
        if not d.want_running and (d.task is None or d.task.done()):
            was = self.state
            self.state = IDLE
            self.connected = False
            fut.try_set_result({})
            if was != IDLE:
                self._lifecycle("_crt_on_closed")
            return
        self.disconnect_futures.append(fut)
        d._stop_on_loop(None)
        d.after_core()

    # -- MQTT 5 driver events (loop thread; ProtocolListener) -----------------------------
    def on_publish(self, packet: c.Publish) -> None:
        self._deliver_publish(packet)
        if self.listeners:
            self.listeners.emit("on_publish", packet)

    def on_connected(self, rejoined_session: bool) -> None:
        sp = rejoined_session
        if self.state == CONNECTING:
            self.state = CONNECTED
            self.connected = True
            fut, self.connect_future = self.connect_future, None
            if fut is not None:
                fut.try_set_result({"session_present": sp})
            self._lifecycle("_crt_on_success", sp)
        elif self.state == CONNECTED:
            self.connected = True
            self._lifecycle("_crt_on_success", sp)
            self._lifecycle("_crt_on_resumed", sp)
        else:
            return
        if self.listeners:
            self.listeners.emit("on_connected", sp)

    def on_connection_failure(self, exc: BaseException | None, connack: object | None) -> None:
        exc = _detached(exc) or error("AWS_ERROR_UNKNOWN")
        if self.state == CONNECTING:
            if getattr(exc, "name", "") == \
                    "AWS_ERROR_MQTT_CONNECTION_RESET_FOR_ADAPTER_CONNECT":
                return
            self.state = IDLE
            fut, self.connect_future = self.connect_future, None
            self._lifecycle("_crt_on_failure", exc)
            if fut is not None:
                fut.try_set_exception(exc)
            if self.started_client and self.d.want_running:
                self.d._stop_on_loop(None)  # the driver runs after_core() after events
        elif self.state == CONNECTED:
            self._lifecycle("_crt_on_failure", exc)

    def on_disconnected(self, error: BaseException | None) -> None:
        if self.state == CONNECTED and self.connected:
            self.connected = False
            exc = _detached(error)
            if self.d.want_running or not self.disconnect_futures:
                self._lifecycle("_crt_on_interrupted", exc)
            if self.listeners:
                self.listeners.emit("on_disconnected", exc)

    def on_stopped(self) -> None:
        futures, self.disconnect_futures = self.disconnect_futures, []
        was = self.state
        self.state = IDLE
        fut, self.connect_future = self.connect_future, None
        if fut is not None:
            fut.try_set_exception(error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"))
        for f in futures:
            f.try_set_result({})
        if futures or was == CONNECTED:
            self._lifecycle("_crt_on_closed")
        if self.connected:
            self.connected = False
            if self.listeners:
                self.listeners.emit("on_disconnected", None)

    # -- private listener interface of the 3.1.1 Connection (any thread) -----------------
    def _add_listener(self, sink: ProtocolListener) -> None:
        self.listeners.add(sink)

    def _remove_listener(self, sink: ProtocolListener) -> None:
        self.listeners.remove(sink)

    def _is_connected(self) -> bool:
        return self.connected

    def _deliver_publish(self, p: c.Publish) -> None:
        t = self.table()
        if t is not None:
            t.deliver(self.callbacks.post, p)

    # -- operations (user threads) -------------------------------------------------------
    def _submit(self, packet: c.Packet, convert: Callable[[Any], Any]) -> CrtFuture:
        return self.d._submit(packet, convert)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> tuple[CrtFuture, int]:
        pid = self.allocate_pid()
        packet = c.Publish(topic, payload, qos, retain, False, 0, {})
        return self._submit(packet, lambda _r: {"packet_id": pid}), pid

    def subscribe(self, topic: str, qos: int, wrapper: Callable[..., None] | None,
                  qos_of: Callable[[int], Any], sub_error: type[Exception]) -> tuple[CrtFuture, int]:
        if qos not in (0, 1):
            raise error("AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION", "the MQTT 5 client subscribes at QoS 0 or 1 only")
        pid = self.allocate_pid()
        packet = c.Subscribe(0, [c.Subscription(topic, qos)], {})
        self.add_subscription(topic, qos, wrapper)

        def convert(suback: Any) -> Any:
            code = suback.reason_codes[0] if suback.reason_codes else 0x80
            if code >= 0x80:
                self.remove_subscriptions([topic])
                raise sub_error(topic)
            return {"packet_id": pid, "topic": topic, "qos": qos_of(code)}

        return self._submit(packet, convert), pid

    def unsubscribe(self, topic: str) -> tuple[CrtFuture, int]:
        pid = self.allocate_pid()
        packet = c.Unsubscribe(0, [topic], {})

        def convert(_unsuback: Any) -> Any:
            self.remove_subscriptions([topic])
            return {"packet_id": pid}

        return self._submit(packet, convert), pid

    def resubscribe(self, qos_of: Callable[[int], Any]) -> tuple[CrtFuture, int | None]:
        from .._runtime.futures import completed

        subs = self.subscriptions()
        if not subs:
            return completed({"packet_id": None, "topics": []}), None
        pid = self.allocate_pid()
        packet = c.Subscribe(0, [c.Subscription(f, q) for f, q in subs], {})

        def convert(suback: Any) -> Any:
            codes = list(suback.reason_codes) + [0x80] * (len(subs) - len(suback.reason_codes))
            return {"packet_id": pid,
                    "topics": [(f, qos_of(code) if code < 0x80 else None) for (f, _q), code in zip(subs, codes)]}

        return self._submit(packet, convert), pid

    def get_stats(self) -> tuple[int, int, int, int]:
        s = self.d.get_stats()
        return (s.incomplete_operation_count, s.incomplete_operation_size,
                s.unacked_operation_count, s.unacked_operation_size)
