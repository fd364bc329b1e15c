"""Runs the MQTT 3.1.1 state machine (:mod:`.core`) for one ``crtpy.mqtt.Connection``.

Everything protocol-related happens on the connection's loop thread.  User threads
encode packets and take packet ids, then hand operations over through a lock-free
deque drained on the loop -- or, on a quiet plain-TCP connection, run the core and
write the packet themselves under the driver's lock (see ``crtpy._mqtt.stream``).  User callbacks (lifecycle, messages, the WebSocket
handshake transform) run on the connection's :class:`CallbackQueue`, never on the loop
thread; futures are completed on the loop thread, and their done-callbacks run on
callback workers.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .._errors import error
from .._mqtt import codec as c
from .._mqtt import stream as _stream
from .._mqtt.listeners import ListenerHost, ListenerSet
from .._mqtt.stream import (
    INLINE_HOLD_SEC,
    CoreTimer,
    LoopInbox,
    MqttStreamProtocol,
    completing,
    inline_reader,
    open_stream,
    wait_or_timeout,
)
from .._runtime.backoff import Backoff, JitterMode
from .._runtime.callbacks import CallbackQueue
from .._runtime.futures import CrtFuture
from . import core as k

_MONO = time.monotonic
_log = logging.getLogger("crtpy.mqtt")

# core events that a callback worker reading inline delivers itself (the others go to
# the loop; see crtpy._mqtt.stream)
_INLINE_EVENTS = frozenset(("publish", "done", "rejected", "unsubscribed"))

# connection phases seen by the public API
IDLE = 0  # never connected, or disconnected by the user, or the first attempt failed
RUNNING = 1  # connected, connecting, or reconnecting


def topic_matches(topic_filter: str, topic: str) -> bool:
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    fl = topic_filter.split("/")
    tl = topic.split("/")
    for i, f in enumerate(fl):
        if f == "#":
            return True
        if i >= len(tl):
            return False
        if f != "+" and f != tl[i]:
            return False
    return len(fl) == len(tl)


def _detached(exc: BaseException) -> BaseException:
    """``exc`` without its traceback and chained exceptions: their frames would keep
    connections and bootstraps alive for as long as a user holds the error."""
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc


class _Protocol(MqttStreamProtocol):
    def __init__(self, driver: Driver, direct: bool) -> None:
        super().__init__(driver.lock, direct)
        self.driver = driver

    def data_received(self, data: bytes) -> None:
        d = self.driver
        if d.protocol is not self:
            return
        self.requickack()  # first: the callbacks posted by after_core() come last
        with d.lock:
            d.core.data_received(data, _MONO())
            d.after_core()


class SubTable:
    """The connection's subscriptions and message callbacks.  Owned by the Connection;
    the driver only holds it weakly, so callbacks that refer to their connection do not
    keep it alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subs: dict[str, tuple[int, Callable[..., None] | None]] = {}  # filter -> (qos, callback)
        self.cache: dict[str, list[Callable[..., None]]] = {}
        self.on_any: Callable[..., None] | None = None

    def add(self, topic_filter: str, qos: int, cb: Callable[..., None] | None) -> None:
        with self.lock:
            self.subs[topic_filter] = (qos, cb)
            self.cache = {}

    def remove(self, filters: Any) -> None:
        with self.lock:
            for f in filters:
                self.subs.pop(f, None)
            self.cache = {}

    def items(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(f, q) for f, (q, _cb) in self.subs.items()]

    def deliver(self, post: Callable[..., None], p: c.Publish) -> None:
        """Post the callbacks of the subscriptions matching ``p`` (and ``on_any``)."""
        topic = p.topic
        cbs = self.cache.get(topic)
        if cbs is None:
            with self.lock:
                cbs = [cb for f, (_q, cb) in self.subs.items() if cb is not None and topic_matches(f, topic)]
                if len(self.cache) > 4096:
                    self.cache = {}
                self.cache[topic] = cbs
        any_cb = self.on_any
        if not cbs and any_cb is None:
            return
        payload = p.payload if type(p.payload) is bytes else bytes(p.payload)
        for cb in cbs:
            post(cb, topic, payload, p.dup, p.qos, p.retain)
        if any_cb is not None:
            post(any_cb, topic, payload, p.dup, p.qos, p.retain)


class SubTableUser:
    """Mixin of the 3.1.1 driver and the MQTT5 adapter: the Connection's subscription
    table, held weakly as ``table``."""

    table: weakref.ref[SubTable]

    def add_subscription(self, topic_filter: str, qos: int, cb: Callable[..., None] | None) -> None:
        t = self.table()
        if t is not None:
            t.add(topic_filter, qos, cb)

    def remove_subscriptions(self, filters: Any) -> None:
        t = self.table()
        if t is not None:
            t.remove(filters)

    def subscriptions(self) -> list[tuple[str, int]]:
        t = self.table()
        return t.items() if t is not None else []


class Driver(LoopInbox, ListenerHost, SubTableUser):
    def __init__(self, conn: Any, bootstrap: Any, table: SubTable) -> None:
        from .._net.connect import pick_loop

        self.conn_ref = weakref.ref(conn)
        self.s: dict[str, Any] = {}
        self.loop_thread = pick_loop(bootstrap)
        self.loop = self.loop_thread.loop
        self.callbacks = CallbackQueue()
        self.callbacks.reader = inline_reader(self)  # see crtpy._mqtt.stream (inline reads)
        self.core: k.Core = k.Core(k.Config(c.Connect(4, "probe"), 3.0, 0.0))
        self.table = weakref.ref(table)
        self.phase = IDLE
        self.task: asyncio.Task[None] | None = None
        self.protocol: _Protocol | None = None
        self.transport: Any = None
        self.wake: asyncio.Event | None = None
        self.want_running = False
        self.timer = CoreTimer(self.loop, self._on_timer)
        self.incoming: collections.deque[Any] = collections.deque()
        self.incoming_scheduled = False
        self.lock = threading.RLock()  # held by whoever touches the core or writes (see stream)
        self.rest = b""
        self.last_submit = 0.0
        self.connect_future: CrtFuture | None = None
        self.disconnect_futures: list[CrtFuture] = []
        self._connected: Any = None
        self._refused: Any = None
        self._lost: Any = None
        self._connack_waiter: asyncio.Future[None] | None = None
        # Internal listeners (request-response): see crtpy._mqtt.listeners.
        self.listeners = ListenerSet()

    # -- private listener interface (any thread) ----------------------------------------
    def _is_connected(self) -> bool:
        """Whether a CONNACK was accepted on the current connection."""
        return self._connected is not None and self.protocol is not None

    # -- user thread side -------------------------------------------------------------
    def _drain(self) -> None:
        self.incoming_scheduled = False
        pop = self.incoming.popleft
        with self.lock:
            try:
                while True:
                    self._handle_item(pop())
            except IndexError:
                pass
            self.after_core()

    def _handle_item(self, item: Any) -> None:
        if type(item) is k.Op:
            self.core.submit(item, _MONO())
            return
        kind = item[0]
        if kind == "connect":
            self._connect_on_loop(item[1], item[2], item[3])
        elif kind == "disconnect":
            self._disconnect_on_loop(item[1])

    def submit(self, kind: int, data: bytes, pid: int, qos: int, topics: Any,
               convert: Callable[[Any], Any]) -> CrtFuture:
        fut = CrtFuture()
        op = k.Op(kind, pid, data, completing(fut, convert), qos, topics)
        now = _MONO()
        sock = self._direct_socket(now)
        if sock is None or not self._send_direct(sock, op, now):
            self._post(op)
        return fut

    def _send_direct(self, sock: socket.socket, op: k.Op, now: float) -> bool:
        """Write ``op`` from this thread if the connection is quiet (see
        ``crtpy._mqtt.stream``); False when it must go through the loop."""
        lock = self.lock
        if not self._lock_for_direct():
            return False  # the loop is busy with the core: it takes this operation too
        try:
            core = self.core
            if (core.state != k.CONNECTED or core.queue or core.close_error is not None or self.incoming
                    or self._direct_socket_locked() is not sock):
                return False
            core.submit(op, now)
            if core.output:
                self._send_locked(sock, self._take_output(core.output))
            # Take this operation's events out of the core.  Never keep a reference to
            # the core's own (empty) list: once the lock is released the loop may append
            # a received message's events to it and deliver them, and they would be
            # delivered a second time below.
            events = core.events
            if events:
                core.events = []
            else:
                events = []
            timeout = core.cfg.operation_timeout
            if timeout > 0 and op.sent:
                self._deadline_added(op.deadline)
        finally:
            lock.release()
        for ev in events:  # this operation's completion (QoS 0), outside the lock
            self._deliver(ev)
        return True

    def get_stats(self) -> tuple[int, int, int, int]:
        stats: tuple[int, int, int, int] = self.loop_thread.run_sync(self._stats, timeout=10.0)
        return stats

    def terminate(self) -> None:
        """The Connection was garbage collected: close the connection, stop reconnecting."""
        try:
            self._post(("disconnect", CrtFuture()))
        except Exception:  # noqa: BLE001 - the loop may already be gone at interpreter exit
            _log.debug("could not stop a collected MQTT connection", exc_info=True)

    def connect(self, fut: CrtFuture, core: k.Core, settings: dict[str, Any]) -> None:
        self._post(("connect", fut, core, settings))

    def disconnect(self, fut: CrtFuture) -> None:
        self._post(("disconnect", fut))

    # -- loop side --------------------------------------------------------------------
    def _connect_on_loop(self, fut: CrtFuture, new_core: k.Core, settings: dict[str, Any]) -> None:
        if self.phase == RUNNING:
            fut.try_set_exception(error("AWS_ERROR_MQTT_ALREADY_CONNECTED"))
            return
        self.s = settings
        # The new settings apply to this and later connections; queued operations and
        # packet ids carry over.
        old = self.core
        new_core.queue = old.queue
        new_core.inflight = old.inflight
        new_core.pids_used = old.pids_used
        new_core.pid_lock = old.pid_lock
        new_core.next_pid = old.next_pid
        new_core.session = old.session
        new_core.sessions_seen = old.sessions_seen
        self.core = new_core
        self.phase = RUNNING
        self.want_running = True
        self.connect_future = fut
        self.wake = asyncio.Event()
        self.task = self.loop.create_task(self._run())

    def _disconnect_on_loop(self, fut: CrtFuture) -> None:
        if self.phase != RUNNING:
            fut.try_set_exception(error("AWS_ERROR_MQTT_NOT_CONNECTED"))
            return
        self.disconnect_futures.append(fut)
        if not self.want_running:
            return
        self.want_running = False
        if self.wake is not None:
            self.wake.set()
        if self.protocol is not None:
            self.core.request_disconnect()
        elif self.transport is not None:
            self.transport.close()

    def after_core(self) -> None:
        """(loop, under ``lock``) Carry out what the core asked for."""
        core = self.core
        proto = self.protocol
        if core.output or self.rest or self.held:
            data = self._take_output(core.output)
            if proto is not None and proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(data)
        # The timer before the events: posting callbacks (waking user threads) is best
        # left as the loop's last work.
        self.timer.follow(core.next_deadline())
        if core.events:
            events = core.events
            core.events = []
            for ev in events:
                self._deliver(ev)
        if core.close_error is not None and proto is not None and proto.transport is not None \
                and not proto.transport.is_closing():
            proto.transport.close()

    def _feed_inline(self, data: bytes) -> bool:
        """(a callback worker reading inline, under ``lock``; see crtpy._mqtt.stream)"""
        core = self.core
        core.data_received(data, _MONO())
        events = core.events
        if core.close_error is not None or self.listeners or any(ev.kind not in _INLINE_EVENTS for ev in events):
            self.loop_thread.loop.call_soon_threadsafe(self._inline_handback)
            return False
        if events:
            core.events = []
            for ev in events:
                self._deliver(ev)
        if core.output:
            if self.callbacks.has_items():
                # the PUBACKs of the messages: sent after their callbacks (when this
                # thread reads again), or with the next write of anyone, not before
                if not self.held:
                    self.inline_flush_at = _MONO() + INLINE_HOLD_SEC
                self.held += self._take_output_only(core.output)
            else:
                self._write_inline()
        elif self.rest:
            self._write_inline()
        deadline = core.next_deadline()
        if deadline is not None:
            self._deadline_added(deadline)
        return True

    def _on_timer(self) -> None:
        with self.lock:
            self.core.tick(_MONO())
            self.after_core()

    def _deliver(self, ev: k.Event) -> None:
        kind = ev.kind
        if kind == "publish":
            self._deliver_publish(ev.a)
        elif kind == "done":
            ev.a.done(*ev.b)
        elif kind == "rejected":
            self.remove_subscriptions([ev.a])
        elif kind == "unsubscribed":
            self.remove_subscriptions(ev.a or ())
        elif kind == "connected":
            self._connected = ev.a
            proto = self.protocol
            if proto is not None and self.loop_thread.in_thread():
                proto.enter_ep(_stream.INLINE_READS_311)
            if self.listeners:
                self.listeners.emit("on_connected", bool(ev.a))
            w = self._connack_waiter
            if w is not None and not w.done():
                w.set_result(None)
        elif kind == "refused":
            self._refused = ev.a
        elif kind == "lost":
            self._lost = ev.a

    def _deliver_publish(self, p: c.Publish) -> None:
        if self.listeners:
            self.listeners.emit("on_publish", p)
        t = self.table()
        if t is not None:
            t.deliver(self.callbacks.post, p)

    def _lifecycle(self, name: str, *args: Any) -> None:
        conn = self.conn_ref()
        if conn is not None:
            self.callbacks.post(getattr(conn, name), *args)

    async def _open(self) -> tuple[Any, _Protocol]:
        s = self.s
        factory: Callable[[], asyncio.BaseProtocol]
        if s["websocket"]:
            from .ws import make_ws_adapter

            def factory() -> asyncio.BaseProtocol:
                return make_ws_adapter(self, _Protocol(self, False))
        else:
            direct = s["tls_ctx"] is None and s["proxy"] is None

            def factory() -> asyncio.BaseProtocol:
                return _Protocol(self, direct)

        def on_transport(transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # a disconnect() during the WebSocket handshake closes it

        transport, proto = await open_stream(
            s["host"], s["port"], factory, proxy=s["proxy"], bootstrap=s["bootstrap"],
            socket_options=s["socket_options"], tls_ctx=s["tls_ctx"], websocket=s["websocket"],
            on_transport=on_transport)
        return transport, proto

    async def _attempt(self) -> tuple[bool, BaseException | None, Any]:
        """One connection attempt.  Returns (connected, error, protocol)."""
        self._connected = None
        self._refused = None
        self._lost = None
        try:
            _transport, proto = await self._open()
        except Exception as e:  # noqa: BLE001 - reported through the callbacks
            from .._net.connect import map_connect_error

            self.transport = None
            return False, _detached(map_connect_error(e) if not hasattr(e, "name") else e), None
        self.protocol = proto
        if not self.want_running:
            if proto.transport is not None:
                proto.transport.close()
            await proto.closed
            self.protocol = None
            self.transport = None
            return False, error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"), None
        with self.lock:
            self.core.connection_opened(_MONO())
            self.after_core()
        # Wait for CONNACK (reported by the core through after_core) or the end of the connection.
        waiter = self.loop.create_future()
        self._connack_waiter = waiter
        closed = proto.closed

        def closed_cb(_f: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)

        closed.add_done_callback(closed_cb)
        if self._connected is None:
            await waiter
        self._connack_waiter = None
        if self._connected is not None and not closed.done():
            return True, None, proto
        exc = await closed
        self._finish_lost(exc)
        return False, self._lost, None

    def _finish_lost(self, exc: BaseException | None) -> None:
        was_connected = self._connected is not None
        with self.lock:
            self.protocol = None
            self.transport = None
            self.rest = self.held = b""  # an unsent remainder dies with its connection
            self.timer.cancel()
            self.core.connection_lost(exc)
            self.core.close_error = None  # reported; do not keep it (or its frames) alive
            self.after_core()
        if was_connected and self.listeners:
            self.listeners.emit("on_disconnected", self._lost if self._lost is not None else exc)

    async def _run(self) -> None:
        s = self.s
        backoff = Backoff(s["min_delay"], s["max_delay"], JitterMode.NONE)
        first = True
        fut = self.connect_future
        self.connect_future = None  # a completed future must not stay reachable from here
        closed_by_user = False
        try:
            while self.want_running:
                ok, exc, proto = await self._attempt()
                if not ok:
                    if not self.want_running:
                        closed_by_user = True
                        if first and fut is not None:
                            fut.try_set_exception(exc or error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"))
                        break
                    if first:  # failed reconnect attempts are not reported (as the reference)
                        self._lifecycle("_crt_on_failure", exc)
                        if fut is not None:
                            fut.try_set_exception(exc or error("AWS_ERROR_UNKNOWN"))
                        break
                else:
                    backoff.reset()
                    session_present = bool(self._connected)
                    if first:
                        if fut is not None:
                            fut.try_set_result({"session_present": session_present})
                    else:
                        self._lifecycle("_crt_on_resumed", session_present)
                    self._lifecycle("_crt_on_success", session_present)
                    first = False
                    exc_lost = await proto.closed
                    self._finish_lost(exc_lost)
                    if not self.want_running:
                        closed_by_user = True
                        break
                    self._lifecycle("_crt_on_interrupted", self._lost)
                if not self.want_running:
                    closed_by_user = True
                    break
                assert self.wake is not None
                await wait_or_timeout(self.wake, backoff.next_delay())
            else:
                closed_by_user = True
        finally:
            self.phase = IDLE
            self.want_running = False
            self._lost = self._connected = self._refused = None
            self.protocol = None
            self.transport = None
            futures, self.disconnect_futures = self.disconnect_futures, []
            for f in futures:
                f.try_set_result({})
            if closed_by_user and not first:
                self._lifecycle("_crt_on_closed")
            if fut is not None and not fut.done():
                fut.try_set_exception(error("AWS_ERROR_MQTT_CONNECTION_DISCONNECTING"))
