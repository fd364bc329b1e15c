"""asyncio front-end of :mod:`crtpy.mqtt` (MQTT 3.1.1; a crtpy extension).

:class:`AioConnection` wraps a :class:`crtpy.mqtt.Connection`: operations are awaited on
the caller's running loop, received messages and connection events are read with
``async for``::

    conn = AioConnection(mqtt.Connection(mqtt.Client(), "broker", 1883, "client-id"))
    async with conn:                                  # connect ... disconnect
        messages = conn.messages()
        await conn.subscribe("a/#", mqtt.QoS.AT_LEAST_ONCE)
        await conn.publish("a/b", b"hi", mqtt.QoS.AT_LEAST_ONCE)
        async for message in messages:
            print(message.topic, message.payload)

The wrapper takes over the connection's ``on_message`` callback (per-subscription
callbacks given to the synchronous API keep working) and chains its lifecycle callbacks:
the ones the connection was built with still run first.  Streams are bounded as in
:mod:`crtpy.aio.mqtt5` (oldest message dropped by default, counted in ``dropped``).
Cancelling a task awaiting an operation cancels that operation's future.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..mqtt import Connection, OperationStatisticsData, QoS
from ._bridge import AsyncStream, Hub, OverflowPolicy, wait_future

__all__ = ["AioConnection", "ConnectionEvent", "Message"]


@dataclass
class Message:
    """One received PUBLISH."""

    topic: str
    payload: bytes
    dup: bool
    qos: QoS
    retain: bool


@dataclass
class ConnectionEvent:
    """A connection lifecycle event.

    ``kind`` is ``"success"``, ``"failure"``, ``"interrupted"``, ``"resumed"`` or
    ``"closed"``; ``data`` is the synchronous callback's data object
    (``OnConnectionSuccessData`` ...) when it has one, ``error`` the exception of a
    failure or interruption, ``session_present`` is set for a resumption."""

    kind: str
    data: Any = None
    error: BaseException | None = None
    session_present: bool | None = None


# How long disconnect() waits for the closed event (it follows the future at once).
_CLOSED_EVENT_WAIT = 5.0

_CALLBACKS = {
    "_on_connection_success_cb": "success",
    "_on_connection_failure_cb": "failure",
    "_on_connection_interrupted_cb": "interrupted",
    "_on_connection_resumed_cb": "resumed",
    "_on_connection_closed_cb": "closed",
}


def _chained(user: Any, kind: str, events: Hub[ConnectionEvent], note: Any) -> Any:
    def fn(**kwargs: Any) -> None:
        note(kind)
        try:
            if user is not None:
                user(**kwargs)  # what it raises is logged by the connection's callback queue
        finally:
            data = kwargs.get("callback_data")
            err = kwargs.get("error") or getattr(data, "error", None)
            events.publish(ConnectionEvent(kind, data, err, kwargs.get("session_present")))

    return fn


async def _until_closed(events: AsyncStream[ConnectionEvent]) -> None:
    async for event in events:
        if event.kind == "closed":
            return


class AioConnection:
    """An MQTT 3.1.1 connection for asyncio code, over :attr:`connection`."""

    def __init__(self, connection: Connection) -> None:
        if not isinstance(connection, Connection):
            raise TypeError("connection must be a crtpy.mqtt.Connection")
        self.connection = connection
        self._messages: Hub[Message] = Hub()
        self._events: Hub[ConnectionEvent] = Hub()
        self._connected_once = False
        messages = self._messages

        def on_message(topic: str, payload: bytes, dup: bool, qos: QoS, retain: bool, **kwargs: Any) -> None:
            messages.publish(Message(topic, payload, dup, qos, retain))

        connection.on_message(on_message)
        for attr, kind in _CALLBACKS.items():
            setattr(connection, attr, _chained(getattr(connection, attr, None), kind, self._events,
                                               self._note))

    def _note(self, kind: str) -> None:
        if kind in ("success", "resumed"):
            self._connected_once = True

    # -- operations ------------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Connect; returns ``{'session_present': bool}`` or raises the failure."""
        result: dict[str, Any] = await wait_future(self.connection.connect())
        return result

    async def disconnect(self) -> dict[str, Any]:
        """Send DISCONNECT and close (no more reconnecting); returns once the
        connection's closed event has been delivered to the event streams."""
        closed = self._events.subscribe(1000, "drop_oldest") if self._connected_once else None
        try:
            result: dict[str, Any] = await wait_future(self.connection.disconnect())
            if closed is not None:
                try:
                    await asyncio.wait_for(_until_closed(closed), _CLOSED_EVENT_WAIT)
                except asyncio.TimeoutError:
                    pass  # the event is only a courtesy to stream readers
        finally:
            if closed is not None:
                closed.close()
        return result

    async def subscribe(self, topic: str, qos: QoS) -> dict[str, Any]:
        """Subscribe; returns ``{'packet_id', 'topic', 'qos'}`` (the granted QoS).  The
        messages arrive on the streams of :meth:`messages`."""
        fut, _pid = self.connection.subscribe(topic, qos)
        result: dict[str, Any] = await wait_future(fut)
        return result

    async def unsubscribe(self, topic: str) -> dict[str, Any]:
        """Unsubscribe; returns ``{'packet_id': int}``."""
        fut, _pid = self.connection.unsubscribe(topic)
        result: dict[str, Any] = await wait_future(fut)
        return result

    async def resubscribe_existing_topics(self) -> dict[str, Any]:
        """Subscribe again to every current subscription."""
        fut, _pid = self.connection.resubscribe_existing_topics()
        result: dict[str, Any] = await wait_future(fut)
        return result

    async def publish(self, topic: str, payload: str | bytes | bytearray, qos: QoS,
                      retain: bool = False) -> dict[str, Any]:
        """Publish; returns ``{'packet_id': int}`` once sent (QoS 0) or acknowledged."""
        fut, _pid = self.connection.publish(topic, payload, qos, retain)
        result: dict[str, Any] = await wait_future(fut)
        return result

    def get_stats(self) -> OperationStatisticsData:
        return self.connection.get_stats()

    # -- streams ---------------------------------------------------------------------------
    def messages(self, maxsize: int = 1000, overflow: OverflowPolicy = "drop_oldest") -> AsyncStream[Message]:
        """A new stream of every message received from now on (call it before
        subscribing); bounded as described in the module documentation."""
        return self._messages.subscribe(maxsize, overflow)

    def lifecycle_events(self, maxsize: int = 1000,
                         overflow: OverflowPolicy = "drop_oldest") -> AsyncStream[ConnectionEvent]:
        """A new stream of :class:`ConnectionEvent` from now on."""
        return self._events.subscribe(maxsize, overflow)

    def close(self) -> None:
        """End every message and event stream."""
        self._messages.end_all()
        self._events.end_all()

    async def __aenter__(self) -> AioConnection:  # noqa: PYI034
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.disconnect()
        finally:
            self.close()
