"""asyncio front-end of :mod:`crtpy.mqtt5` (a crtpy extension; awscrt has none).

:class:`AioClient` wraps a :class:`crtpy.mqtt5.Client`.  Its operations are awaited on
the caller's running loop, received messages and lifecycle events are read with
``async for``::

    async with AioClient(mqtt5.ClientOptions("broker", 1883)) as client:
        messages = client.messages()            # subscribe the stream first
        await client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a/#")]))
        await client.publish(mqtt5.PublishPacket(topic="a/b", payload=b"hi", qos=mqtt5.QoS.AT_LEAST_ONCE))
        async for packet in messages:
            ...

The connection itself runs on crtpy's own loop thread; nothing here blocks the
caller's loop.  Cancelling a task that awaits an operation cancels the future of that
operation (its outcome is dropped).  Message streams are bounded: when ``maxsize``
messages wait unread, the oldest is dropped (or the newest, with
``overflow="drop_newest"``) and the stream's ``dropped`` counter grows — a slow reader
never stalls the connection or its keep-alive.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..mqtt5 import (
    Client,
    ClientOptions,
    DisconnectPacket,
    LifecycleAttemptingConnectData,
    LifecycleConnectFailureData,
    LifecycleConnectSuccessData,
    LifecycleDisconnectData,
    LifecycleStoppedData,
    OperationStatisticsData,
    PublishCompletionData,
    PublishPacket,
    PublishReceivedData,
    SubackPacket,
    SubscribePacket,
    UnsubackPacket,
    UnsubscribePacket,
)
from ._bridge import AsyncStream, Hub, LoopFuture, OverflowPolicy, wait_future

__all__ = ["AioClient", "LifecycleEvent"]

_log = logging.getLogger("crtpy.aio.mqtt5")

LifecycleEvent = (LifecycleStoppedData | LifecycleAttemptingConnectData
                  | LifecycleConnectSuccessData | LifecycleConnectFailureData
                  | LifecycleDisconnectData)
"""Any of the five lifecycle event types of :mod:`crtpy.mqtt5`."""

_EVENT_FIELDS = {
    "on_lifecycle_event_stopped_fn": "stopped",
    "on_lifecycle_event_attempting_connect_fn": "attempting",
    "on_lifecycle_event_connection_success_fn": "success",
    "on_lifecycle_event_connection_failure_fn": "failure",
    "on_lifecycle_event_disconnection_fn": "disconnect",
}


def _chain(user: Callable[[Any], None] | None, ours: Callable[[Any], None]) -> Callable[[Any], None]:
    def both(data: Any) -> None:
        if user is not None:
            try:
                user(data)
            except Exception:  # noqa: BLE001 - logged like any crtpy user callback
                _log.exception("exception in user callback %r", user)
        ours(data)
    return both


class _State:
    """What the client's callbacks update (held weakly apart from the AioClient, so a
    dropped AioClient still lets its Client be collected)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connected = False
        self.running = False
        self.connect_waiters: list[LoopFuture[LifecycleConnectSuccessData]] = []
        self.first_attempt_waiters: list[LoopFuture[LifecycleConnectSuccessData]] = []
        self.stop_waiters: list[LoopFuture[LifecycleStoppedData]] = []
        self.messages: Hub[PublishPacket] = Hub()
        self.events: Hub[LifecycleEvent] = Hub()

    def on_publish(self, data: PublishReceivedData) -> None:
        if data.publish_packet is not None:
            self.messages.publish(data.publish_packet)

    def event_handler(self, kind: str) -> Callable[[Any], None]:
        def handle(data: Any) -> None:
            self.on_event(kind, data)
        return handle

    def on_event(self, kind: str, data: Any) -> None:
        done: list[LoopFuture[Any]] = []
        failed: list[LoopFuture[Any]] = []
        with self.lock:
            if kind == "success":
                self.connected = True
                done = self.connect_waiters + self.first_attempt_waiters
                self.connect_waiters, self.first_attempt_waiters = [], []
            elif kind == "failure":
                failed, self.first_attempt_waiters = self.first_attempt_waiters, []
            elif kind == "disconnect":
                self.connected = False
            elif kind == "stopped":
                self.connected = False
                self.running = False
                done, self.stop_waiters = self.stop_waiters, []
                failed, self.first_attempt_waiters = self.first_attempt_waiters, []
        # The event reaches the streams before any waiter wakes (both are hand-offs to
        # the waiting loops, in order): after `await stop()` the stopped event is in them.
        self.events.publish(data)
        for w in done:
            w.set_result(data)
        if failed:
            exc = getattr(data, "exception", None)
            if exc is None:
                from .._errors import error
                exc = error("AWS_ERROR_MQTT5_USER_REQUESTED_STOP",
                            "the client stopped before it connected")
            for w in failed:
                w.set_exception(exc)


class AioClient:
    """An MQTT 5 client for asyncio code, over a :class:`crtpy.mqtt5.Client`.

    ``client_options`` is used as given, except that its callbacks are chained: yours
    (if any) run first on a crtpy callback thread, then the event reaches the streams of
    this object.  The wrapped synchronous client is :attr:`client`.

    Use it as an async context manager (``start`` then ``stop``), or call
    :meth:`start` and :meth:`stop` yourself.
    """

    def __init__(self, client_options: ClientOptions) -> None:
        if not isinstance(client_options, ClientOptions):
            raise TypeError("client_options must be a ClientOptions")
        state = _State()
        self._state = state
        changes: dict[str, Any] = {
            "on_publish_callback_fn": _chain(client_options.on_publish_callback_fn, state.on_publish)}
        for name, kind in _EVENT_FIELDS.items():
            changes[name] = _chain(getattr(client_options, name), state.event_handler(kind))
        self.client: Client = Client(dataclasses.replace(client_options, **changes))

    # -- connection ------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True between a connection success and the next disconnection."""
        return self._state.connected

    async def start(self, wait_connected: bool = True) -> LifecycleConnectSuccessData | None:
        """Start the client.  With ``wait_connected`` (the default), wait for the outcome
        of the first connection attempt: its :class:`LifecycleConnectSuccessData`, or the
        exception of its failure (the client then keeps retrying in the background until
        :meth:`stop`).  Cancelling the wait leaves the client started."""
        st = self._state
        waiter: LoopFuture[LifecycleConnectSuccessData] | None = None
        with st.lock:
            if wait_connected:
                if st.connected:
                    return None
                waiter = LoopFuture()
                st.first_attempt_waiters.append(waiter)
            st.running = True
        try:
            self.client.start()
        except BaseException:
            self._forget(st.first_attempt_waiters, waiter)
            raise
        if waiter is None:
            return None
        try:
            return await waiter
        finally:
            self._forget(st.first_attempt_waiters, waiter)

    async def wait_connected(self) -> LifecycleConnectSuccessData | None:
        """Return at once if connected (None), else wait for the next connection success."""
        st = self._state
        with st.lock:
            if st.connected:
                return None
            waiter: LoopFuture[LifecycleConnectSuccessData] = LoopFuture()
            st.connect_waiters.append(waiter)
        try:
            return await waiter
        finally:
            self._forget(st.connect_waiters, waiter)

    async def stop(self, disconnect_packet: DisconnectPacket | None = None) -> LifecycleStoppedData | None:
        """Stop the client (sending ``disconnect_packet`` first if given) and wait for
        its stopped event.  Returns None at once if it was not started."""
        st = self._state
        with st.lock:
            if not st.running:
                return None
            waiter: LoopFuture[LifecycleStoppedData] = LoopFuture()
            st.stop_waiters.append(waiter)
        try:
            self.client.stop(disconnect_packet)  # type: ignore[arg-type]
            return await waiter
        finally:
            self._forget(st.stop_waiters, waiter)

    def _forget(self, waiters: list[Any], waiter: Any) -> None:
        if waiter is None:
            return
        with self._state.lock:
            try:
                waiters.remove(waiter)
            except ValueError:
                pass

    # -- operations ------------------------------------------------------------------------
    async def publish(self, publish_packet: PublishPacket) -> PublishCompletionData:
        """Send a PUBLISH; the result carries the PUBACK for QoS 1."""
        return await wait_future(self.client.publish(publish_packet))

    async def subscribe(self, subscribe_packet: SubscribePacket) -> SubackPacket:
        """Send a SUBSCRIBE and return the SUBACK."""
        return await wait_future(self.client.subscribe(subscribe_packet))

    async def unsubscribe(self, unsubscribe_packet: UnsubscribePacket) -> UnsubackPacket:
        """Send an UNSUBSCRIBE and return the UNSUBACK."""
        return await wait_future(self.client.unsubscribe(unsubscribe_packet))

    def get_stats(self) -> OperationStatisticsData:
        """Statistics of the client's operation queues."""
        return self.client.get_stats()

    # -- streams ---------------------------------------------------------------------------
    def messages(self, maxsize: int = 1000,
                 overflow: OverflowPolicy = "drop_oldest") -> AsyncStream[PublishPacket]:
        """A new stream of every PUBLISH received from now on, for ``async for``.

        Call it on the loop that reads it, before subscribing, so nothing is missed.
        At most ``maxsize`` messages wait unread; beyond that ``overflow`` drops the
        oldest (default) or the newest, counted in the stream's ``dropped``.  Closing the
        stream (``await stream.aclose()``, or leaving ``async with stream``) unregisters
        it; :meth:`close` ends every stream."""
        return self._state.messages.subscribe(maxsize, overflow)

    def lifecycle_events(self, maxsize: int = 1000,
                         overflow: OverflowPolicy = "drop_oldest") -> AsyncStream[LifecycleEvent]:
        """A new stream of the lifecycle events from now on (the ``Lifecycle*Data``
        objects of :mod:`crtpy.mqtt5`), with the same rules as :meth:`messages`."""
        return self._state.events.subscribe(maxsize, overflow)

    def close(self) -> None:
        """End every message and lifecycle stream (readers see the end of iteration
        once they have read what was already queued)."""
        self._state.messages.end_all()
        self._state.events.end_all()

    async def __aenter__(self) -> AioClient:  # noqa: PYI034
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.stop()
        finally:
            self.close()

