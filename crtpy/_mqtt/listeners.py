"""The one private listener interface of crtpy's MQTT clients.

Both protocol drivers (MQTT 5: ``driver5.ClientDriver``; MQTT 3.1.1:
``_mqtt311.driver.Driver``) and the 3.1.1-over-MQTT-5 adapter
(``_mqtt311.adapter.Adapter``) keep a :class:`ListenerSet`.  Internal components (the
3.1.1 adapter, the request-response protocol adapters) register a
:class:`ProtocolListener` with ``_add_listener(sink)`` and unregister it with
``_remove_listener(sink)``; both are safe from any thread.

Every notification runs on the client's loop thread, synchronously inside the client's
own event processing: a listener must be quick, must not block, and must copy anything
it keeps from a packet (payload buffers may be reused).  A listener that wants to call
back into the client should defer that work (``loop.call_soon``).

Listeners are held weakly: whoever registers one keeps it alive, and a listener that
is collected is dropped without notice.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import Publish


_log = logging.getLogger("crtpy.mqtt")


class ProtocolListener:
    """Base class with no-op notifications; override what you need."""

    def on_publish(self, packet: Publish) -> None:
        """An incoming PUBLISH (every one, whatever the user's subscriptions)."""

    def on_connected(self, rejoined_session: bool) -> None:
        """A connection was established (CONNACK accepted)."""

    def on_disconnected(self, error: BaseException | None) -> None:
        """An established connection ended (``error`` says why, when known)."""

    def on_connection_failure(self, exc: BaseException | None, connack: object | None) -> None:
        """A connection attempt failed (MQTT 5 driver only; ``connack`` is the refusing
        CONNACK, if any)."""

    def on_stopped(self) -> None:
        """The client stopped and will not reconnect until started again (MQTT 5 only)."""


class ListenerSet:
    """Weakly held listeners, snapshotted copy-on-write so the loop thread iterates a
    plain tuple while other threads add or remove."""

    __slots__ = ("_lock", "_refs")

    def __init__(self) -> None:
        # re-entrant: a collected listener's weakref callback may run inside add/remove
        self._lock = threading.RLock()
        self._refs: tuple[weakref.ref[ProtocolListener], ...] = ()

    def __bool__(self) -> bool:
        return bool(self._refs)

    def add(self, sink: ProtocolListener) -> None:
        with self._lock:
            if any(r() is sink for r in self._refs):
                return
            self._refs = (*(r for r in self._refs if r() is not None), weakref.ref(sink, self._dead))

    def remove(self, sink: ProtocolListener) -> None:
        with self._lock:
            self._refs = tuple(r for r in self._refs if r() is not None and r() is not sink)

    def _dead(self, ref: weakref.ref[ProtocolListener]) -> None:
        with self._lock:
            self._refs = tuple(r for r in self._refs if r is not ref)

    def snapshot(self) -> list[ProtocolListener]:
        out = []
        for r in self._refs:
            sink = r()
            if sink is not None:
                out.append(sink)
        return out

    def emit(self, name: str, *args: Any) -> None:
        """Call ``sink.<name>(*args)`` on every listener; a failing listener is logged
        and never disturbs the client or the other listeners."""
        for sink in self.snapshot():
            try:
                getattr(sink, name)(*args)
            except Exception:  # noqa: BLE001 - a listener bug must not break the protocol client
                _log.exception("MQTT listener %r failed in %s", sink, name)


class ListenerHost:
    """Mixin of the two protocol drivers: the private listener interface over their
    ``listeners`` set (any thread)."""

    listeners: ListenerSet

    def _add_listener(self, sink: ProtocolListener) -> None:
        self.listeners.add(sink)

    def _remove_listener(self, sink: ProtocolListener) -> None:
        self.listeners.remove(sink)
