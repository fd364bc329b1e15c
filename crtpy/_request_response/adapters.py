"""Protocol adapters: how the engine reaches an MQTT5 client or an MQTT 3.1.1 connection.

Both adapters are listeners of their protocol client's private listener interface
(``crtpy._mqtt.listeners``: ``_add_listener`` / ``_remove_listener``, with
``on_publish`` / ``on_connected`` / ``on_disconnected`` called on the client's loop
thread).  Nothing of the protocol clients is wrapped or replaced: the user's own
callbacks, including message callbacks of a 3.1.1 subscription on the same topic filter
as a request-response subscription, keep working.  On 3.1.1 the adapter subscribes and
unsubscribes through the connection's untracked operations, which leave the
connection's subscription table (and so the user's callbacks) alone.

Everything an adapter tells its sink, and every completion callback it runs, happens on
the adapter's loop thread, and never inside the protocol client's own processing
(calls are deferred with ``call_soon``), so the engine may call back into the client.
"""
from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import NAME_BY_CODE
from .._mqtt.listeners import ProtocolListener

if TYPE_CHECKING:
    from .. import mqtt, mqtt5
    from .._mqtt.codec import Publish
    from .._mqtt.driver5 import ClientDriver

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


class _ListeningAdapter(_WeakCompletions, ProtocolListener):
    """Turns protocol listener notifications into deferred engine sink calls."""

    sink: Any

    def _register(self) -> None: ...

    def _unregister(self) -> None: ...

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is gone: nobody waits for this any more
            _log.debug("request-response event after the event loop stopped", exc_info=True)

    # ProtocolListener (the protocol client's loop thread, inside its processing)
    def on_publish(self, packet: Publish) -> None:
        if self.sink is not None:
            payload = packet.payload  # copied: the client may reuse its buffer
            self._to_loop(self._event, "publish", (packet.topic, bytes(payload)))

    def on_connected(self, rejoined_session: bool) -> None:
        if self.sink is not None:
            self._to_loop(self._event, "connected", bool(rejoined_session))

    def on_disconnected(self, error: BaseException | None) -> None:
        if self.sink is not None:
            self._to_loop(self._event, "disconnected", None)

    def _event(self, kind: str, a: Any) -> None:
        sink = self.sink
        if sink is None:
            return
        if kind == "publish":
            _safe(sink.on_publish, a[0], a[1])
        elif kind == "connected":
            _safe(sink.on_connected, a)
        else:
            _safe(sink.on_disconnected)

    def attach(self, sink: Any) -> None:
        self.sink = sink
        self._register()

    def detach(self) -> None:
        self.detach_now(self.sink)

    def detach_now(self, sink: Any) -> None:
        """Stop delivering to ``sink``; safe from any thread."""
        self.sink = None
        self._unregister()


# -- MQTT5 ------------------------------------------------------------------------------------
class Mqtt5Adapter(_ListeningAdapter):
    def __init__(self, client: mqtt5.Client) -> None:
        self._init_completions()
        driver = getattr(client, "_driver", None)
        if driver is None or not callable(getattr(driver, "_add_listener", None)):
            raise TypeError("this mqtt5.Client offers no hook for a request-response client")
        self.client = client
        self.driver: ClientDriver = driver
        self.loop_thread = driver.loop_thread
        self.loop = driver.loop
        self.sink = None

    @property
    def connected(self) -> bool:
        return self.driver._is_connected()

    def _register(self) -> None:
        self.driver._add_listener(self)

    def _unregister(self) -> None:
        self.driver._remove_listener(self)

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
class Mqtt311Adapter(_ListeningAdapter):
    def __init__(self, connection: mqtt.Connection) -> None:
        self._init_completions()
        self.connection = connection
        self.loop_thread = connection._loop_thread()
        self.loop = self.loop_thread.loop
        self.sink = None

    @property
    def connected(self) -> bool:
        return self.connection._is_connected()

    def _register(self) -> None:
        self.connection._add_listener(self)

    def _unregister(self) -> None:
        self.connection._remove_listener(self)

    def subscribe(self, topic_filter: str, done: Callable[[str | None, bool], None]) -> None:
        from .. import mqtt

        def handle(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                _safe(done, None, False)
            elif isinstance(exc, mqtt.SubscribeError):
                _safe(done, "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
            else:
                _safe(done, _error_name(exc), not self.connected)

        fut = self.connection._subscribe_untracked(topic_filter, mqtt.QoS.AT_LEAST_ONCE)
        self._when_done(fut, handle)

    def unsubscribe(self, topic_filter: str, done: Callable[[str | None], None]) -> None:
        def handle(f: Any) -> None:
            exc = f.exception()
            _safe(done, None if exc is None else _error_name(exc))

        self._when_done(self.connection._unsubscribe_untracked(topic_filter), handle)

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
