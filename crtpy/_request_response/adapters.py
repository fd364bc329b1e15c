"""Protocol adapters: how the engine reaches an MQTT5 client or an MQTT 3.1.1 connection.

Neither protocol client offers a listener interface yet, so each adapter hooks in
privately (and says so here):

* MQTT5: the client's driver turns protocol events into user callbacks in
  ``_deliver(event)`` on its loop thread.  One small hub per driver wraps that method
  (instance attribute, the original still runs first) and fans publish /
  connection-success / disconnection events out to every attached engine.
* MQTT 3.1.1: incoming messages come from the callback of the adapter's own
  ``subscribe`` calls (public API); connection success / resumption / interruption come
  from wrapping the connection's ``_crt_on_success`` / ``_crt_on_resumed`` /
  ``_crt_on_interrupted`` hooks.

Everything an adapter tells its sink, and every completion callback it runs, happens on
the adapter's loop thread, and never inside the protocol client's own processing
(calls are deferred with ``call_soon``), so the engine may call back into the client.
"""
from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .._errors import NAME_BY_CODE

_log = logging.getLogger("crtpy.mqtt_request_response")


def _error_name(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    if isinstance(name, str):
        return name
    return NAME_BY_CODE.get(getattr(exc, "code", -1), "AWS_ERROR_UNKNOWN")


def _safe(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - an engine bug must not break the protocol client
        _log.exception("request-response engine failed handling a protocol event")


class _WeakCompletions:
    """Future completions that do not keep the adapter alive.

    The protocol clients stop themselves when garbage-collected, but their drivers
    (kept by a finalizer) hold the callbacks of pending operations; a callback holding
    the adapter would hold the protocol client, which could then never be collected.
    So a future's callback holds only a weak reference and a key; the handler itself
    lives in the adapter."""

    loop: Any

    def _init_completions(self) -> None:
        self._pending: dict[int, Callable[[Any], None]] = {}
        self._keys = itertools.count()

    def _when_done(self, future: Any, handler: Callable[[Any], None]) -> None:
        key = next(self._keys)
        self._pending[key] = handler
        me = weakref.ref(self)

        def done(f: Any) -> None:
            adapter = me()
            if adapter is None:
                return
            try:
                adapter.loop.call_soon_threadsafe(adapter._complete, key, f)
            except RuntimeError:
                pass  # loop closed: nothing is waiting any more

        add = getattr(future, "add_done_callback_inline", None) or future.add_done_callback
        add(done)

    def _complete(self, key: int, f: Any) -> None:
        handler = self._pending.pop(key, None)
        if handler is not None:
            _safe(handler, f)


# -- MQTT5 ------------------------------------------------------------------------------------
class _Mqtt5Hub:
    """Installed once per MQTT5 driver; fans its events out to attached sinks."""

    def __init__(self, driver: Any) -> None:
        self.sinks: list[Any] = []
        self.loop = driver.loop
        original = driver._deliver
        hub = self

        def deliver(ev: Any) -> None:
            kind = getattr(ev, "kind", None)
            if kind == "publish" and hub.sinks:
                p = ev.a
                topic, payload = p.topic, bytes(p.payload)  # copy before the buffer is reused
                original(ev)
                hub.loop.call_soon(hub.fan_out, "publish", topic, payload)
                return
            original(ev)
            if kind == "connect_success":
                rejoined = bool(getattr(ev.b, "rejoined_session", False))
                hub.loop.call_soon(hub.fan_out, "connected", rejoined, None)
            elif kind == "disconnection":
                hub.loop.call_soon(hub.fan_out, "disconnected", None, None)

        driver._deliver = deliver

    def fan_out(self, kind: str, a: Any, b: Any) -> None:
        for sink in list(self.sinks):
            if kind == "publish":
                _safe(sink.on_publish, a, b)
            elif kind == "connected":
                _safe(sink.on_connected, a)
            else:
                _safe(sink.on_disconnected)


_hub_lock = threading.Lock()


class Mqtt5Adapter(_WeakCompletions):
    def __init__(self, client: Any) -> None:
        self._init_completions()
        driver = getattr(client, "_driver", None)
        if driver is None or not callable(getattr(driver, "_deliver", None)):
            raise TypeError("this mqtt5.Client offers no hook for a request-response client")
        self.client = client
        self.driver = driver
        self.loop_thread = driver.loop_thread
        self.loop = driver.loop
        self.sink: Any = None

    @property
    def connected(self) -> bool:
        from .._mqtt import client5

        return getattr(self.driver.core, "state", None) == getattr(client5, "CONNECTED", object())

    def attach(self, sink: Any) -> None:
        with _hub_lock:
            hub = getattr(self.driver, "_crtpy_rr_hub", None)
            if hub is None:
                hub = _Mqtt5Hub(self.driver)
                self.driver._crtpy_rr_hub = hub
            hub.sinks.append(sink)
        self.sink = sink

    def detach(self) -> None:
        self.detach_now(self.sink)

    def detach_now(self, sink: Any) -> None:
        """Stop delivering to ``sink``; safe from any thread."""
        with _hub_lock:
            hub = getattr(self.driver, "_crtpy_rr_hub", None)
            if hub is not None and sink in hub.sinks:
                hub.sinks.remove(sink)
        self.sink = None

    def subscribe(self, topic_filter: str, done: Callable[[str | None, bool], None]) -> None:
        from .. import mqtt5

        def handle(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                _safe(done, _error_name(exc), not self.connected)
                return
            codes = list(getattr(f.result(), "reason_codes", None) or [])
            if codes and int(codes[0]) >= 128:
                _safe(done, "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
            else:
                _safe(done, None, False)

        def go() -> None:
            try:
                fut = self.client.subscribe(mqtt5.SubscribePacket(
                    subscriptions=[mqtt5.Subscription(topic_filter, mqtt5.QoS.AT_LEAST_ONCE)]))
            except Exception as e:  # noqa: BLE001
                _safe(done, _error_name(e), False)
                return
            self._when_done(fut, handle)

        self.loop.call_soon(go)

    def unsubscribe(self, topic_filter: str, done: Callable[[str | None], None]) -> None:
        from .. import mqtt5

        def handle(f: Any) -> None:
            exc = f.exception()
            _safe(done, None if exc is None else _error_name(exc))

        def go() -> None:
            try:
                fut = self.client.unsubscribe(mqtt5.UnsubscribePacket(topic_filters=[topic_filter]))
            except Exception as e:  # noqa: BLE001
                _safe(done, _error_name(e))
                return
            self._when_done(fut, handle)

        self.loop.call_soon(go)

    def publish(self, topic: str, payload: bytes, done: Callable[[BaseException | None], None]) -> None:
        from .. import mqtt5

        def handle(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                puback = getattr(f.result(), "puback", None)
                code = getattr(puback, "reason_code", 0) if puback is not None else 0
                if code is not None and int(code) >= 128:
                    exc = RuntimeError(f"PUBACK reason code {int(code)}")
            _safe(done, exc)

        def go() -> None:
            try:
                fut = self.client.publish(mqtt5.PublishPacket(
                    topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE))
            except Exception as e:  # noqa: BLE001
                _safe(done, e)
                return
            self._when_done(fut, handle)

        self.loop.call_soon(go)


# -- MQTT 3.1.1 ---------------------------------------------------------------------------------
class Mqtt311Adapter(_WeakCompletions):
    def __init__(self, connection: Any) -> None:
        self._init_completions()
        self.connection = connection
        driver = getattr(connection, "_driver", None)
        loop_thread = getattr(driver, "loop_thread", None)
        if loop_thread is None:
            from .._net.connect import pick_loop

            loop_thread = pick_loop(None)
        self.loop_thread = loop_thread
        self.loop = loop_thread.loop
        self.sink: Any = None

    @property
    def connected(self) -> bool:
        driver = getattr(self.connection, "_driver", None)
        # the driver keeps the CONNACK's session-present flag (None before a CONNACK) and
        # its protocol object while the connection lasts
        return (getattr(driver, "_connected", None) is not None
                and getattr(driver, "protocol", None) is not None)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop_thread.call_soon(fn, *args)
        except Exception:  # noqa: BLE001 - the loop is gone: nobody waits for this any more
            _log.debug("request-response event after the event loop stopped", exc_info=True)

    def attach(self, sink: Any) -> None:
        self.sink = sink
        conn = self.connection
        me = weakref.ref(self)

        def chain(name: str, kind: str) -> None:
            original = getattr(conn, name, None)
            if original is None:
                return

            def hook(*args: Any) -> None:
                try:
                    original(*args)
                finally:
                    adapter = me()
                    if adapter is not None and adapter.sink is not None:
                        adapter._to_loop(adapter._event, kind, bool(args[0]) if args else None)

            setattr(conn, name, hook)

        # _crt_on_success follows every CONNACK (first connection and resumptions alike)
        chain("_crt_on_success", "connected")
        chain("_crt_on_interrupted", "disconnected")

    def _event(self, kind: str, a: Any) -> None:
        sink = self.sink
        if sink is None:
            return
        if kind == "connected":
            _safe(sink.on_connected, a)
        elif kind == "disconnected":
            _safe(sink.on_disconnected)
        else:
            _safe(sink.on_publish, a[0], a[1])

    def detach(self) -> None:
        self.sink = None  # the wrapped hooks stay but do nothing without a sink

    def detach_now(self, sink: Any) -> None:
        self.sink = None

    def subscribe(self, topic_filter: str, done: Callable[[str | None, bool], None]) -> None:
        from .. import mqtt

        me = weakref.ref(self)  # the connection keeps this callback; it must not keep us

        def on_message(topic: str, payload: bytes, *_args: Any, **_kwargs: Any) -> None:
            adapter = me()
            if adapter is not None:
                adapter._to_loop(adapter._event, "publish", (topic, bytes(payload)))

        def handle(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                _safe(done, None, False)
            elif type(exc).__name__ == "SubscribeError":
                _safe(done, "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
            else:
                _safe(done, _error_name(exc), not self.connected)

        try:
            fut, _pid = self.connection.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, on_message)
        except Exception as e:  # noqa: BLE001
            self._to_loop(done, _error_name(e), False)
            return
        self._when_done(fut, handle)

    def unsubscribe(self, topic_filter: str, done: Callable[[str | None], None]) -> None:
        def handle(f: Any) -> None:
            exc = f.exception()
            _safe(done, None if exc is None else _error_name(exc))

        try:
            fut, _pid = self.connection.unsubscribe(topic_filter)
        except Exception as e:  # noqa: BLE001
            self._to_loop(done, _error_name(e))
            return
        self._when_done(fut, handle)

    def publish(self, topic: str, payload: bytes, done: Callable[[BaseException | None], None]) -> None:
        from .. import mqtt

        def handle(f: Any) -> None:
            _safe(done, f.exception())

        try:
            fut, _pid = self.connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        except Exception as e:  # noqa: BLE001
            self._to_loop(done, e)
            return
        self._when_done(fut, handle)
