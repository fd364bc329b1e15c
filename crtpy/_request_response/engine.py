"""The request-response engine: requests, correlation, streaming operations.

Everything here runs on one event-loop thread (the protocol client's); public methods
hop onto it.  Subscription decisions are delegated to the sans-I/O
:class:`~.subscriptions.SubscriptionManager`; the protocol client is reached through an
adapter (:mod:`.adapters`) with this shape::

    loop_thread                          # crtpy._runtime.loop.LoopThread
    connected: bool                      # current state, read once at attach
    attach(sink) / detach()              # sink gets on_publish/on_connected/on_disconnected
    subscribe(filter, done(err, retryable)), unsubscribe(filter, done(err)),
    publish(topic, payload, done(err))   # done callbacks arrive on the loop thread

Requests are queued in order; the head of the queue leaves it when no in-flight request
uses its correlation token (token-less requests share the empty token, so they run one
at a time) and its subscriptions fit the budget; otherwise the queue waits.
"""
from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable
from typing import Any

from .._errors import error
from .._runtime.callbacks import CallbackQueue
from .._runtime.futures import CrtFuture
from . import tokens
from .subscriptions import Acquire, Kind, SubscriptionManager
from .topics import matches

_log = logging.getLogger("crtpy.mqtt_request_response")

# request states
QUEUED, SUBSCRIBING, PUBLISHED, DONE = range(4)
# stream states
S_NEW, S_OPENING, S_BLOCKED, S_OPEN, S_HALTED, S_CLOSED = range(6)

ESTABLISHED, LOST, HALTED = 0, 1, 2  # SubscriptionStatusEventType values


class Request:
    __slots__ = (
        "filters",
        "future",
        "id",
        "paths",
        "payload",
        "response_topics",
        "state",
        "timer",
        "token",
        "topic",
    )

    def __init__(self, op_id: int, filters: list[str], paths: list[tuple[str, str | None]],
                 topic: str, payload: bytes, token: str | None, future: CrtFuture) -> None:
        self.id = op_id
        self.filters = filters
        self.paths = paths
        self.topic = topic
        self.payload = payload
        self.token = token or ""
        self.future = future
        self.state = QUEUED
        self.timer: Any = None
        self.response_topics = frozenset(t for t, _ in paths)


class Stream:
    __slots__ = ("filter", "id", "on_publish", "on_status", "state")

    def __init__(self, op_id: int, topic_filter: str,
                 on_status: Callable[[int, BaseException | None], None],
                 on_publish: Callable[[str, bytes], None]) -> None:
        self.id = op_id
        self.filter = topic_filter
        self.on_status = on_status
        self.on_publish = on_publish
        self.state = S_NEW


class Engine:
    def __init__(self, adapter: Any, max_request_response: int, max_streaming: int,
                 timeout_sec: float) -> None:
        self.adapter = adapter
        self.loop_thread = adapter.loop_thread
        self.loop = self.loop_thread.loop
        self.timeout = timeout_sec
        self.subs = SubscriptionManager(max_request_response, max_streaming)
        self.callbacks = CallbackQueue()
        self.ids = itertools.count(1)
        self.queue: collections.deque[Request] = collections.deque()
        self.requests: dict[int, Request] = {}
        self.in_flight: dict[str, Request] = {}            # correlation token -> request
        self.paths: dict[str, collections.Counter[str | None]] = {}  # response topic -> json path counts
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.attached = False
        self.loop_thread.call_soon(self._attach)

    # -- user threads --------------------------------------------------------------------
    def submit(self, filters: list[str], paths: list[tuple[str, str | None]], topic: str,
               payload: bytes, token: str | None) -> CrtFuture:
        future = CrtFuture()
        req = Request(next(self.ids), filters, paths, topic, payload, token, future)
        self._to_loop(self._submit, req)
        return future

    def new_stream(self, topic_filter: str, on_status: Callable[[int, BaseException | None], None],
                   on_publish: Callable[[str, bytes], None]) -> int:
        stream = Stream(next(self.ids), topic_filter, on_status, on_publish)
        self._to_loop(self._add_stream, stream)
        return stream.id

    def _add_stream(self, stream: Stream) -> None:
        if not self.closed:
            self.streams[stream.id] = stream

    def open_stream(self, stream_id: int) -> None:
        self._to_loop(self._open_stream, stream_id)

    def close_stream(self, stream_id: int) -> None:
        self._to_loop(self._close_stream, stream_id)

    def close(self) -> None:
        # Stop listening at once (from any thread): a sink left attached to a protocol
        # client whose loop is already stopping would keep that client alive.
        if self.attached:
            self.adapter.detach_now(self)
        self._to_loop(self._close)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self.loop_thread.in_thread():
            fn(*args)
            return
        try:
            self.loop_thread.call_soon(fn, *args)
        except Exception as e:  # noqa: BLE001 - the loop is gone: fail what cannot run
            if fn == self._submit:
                args[0].future.try_set_exception(e)

    # -- loop thread: wiring -------------------------------------------------------------
    def _attach(self) -> None:
        if self.closed:
            return
        self.adapter.attach(self)
        self.attached = True
        if self.adapter.connected:
            self.subs.on_connected(True)
        self._service()

    def on_connected(self, rejoined_session: bool) -> None:
        self.subs.on_connected(rejoined_session)
        self._service()

    def on_disconnected(self) -> None:
        self.subs.on_disconnected()

    def on_publish(self, topic: str, payload: bytes) -> None:
        if self.closed:
            return
        self._correlate(topic, payload)
        for stream in list(self.streams.values()):
            if stream.state == S_OPEN and matches(stream.filter, topic):
                self.callbacks.post(stream.on_publish, topic, payload)

    # -- loop thread: requests ---------------------------------------------------------------
    def _submit(self, req: Request) -> None:
        if self.closed:
            req.future.try_set_exception(error("AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN"))
            return
        self.requests[req.id] = req
        req.timer = self.loop.call_later(self.timeout, self._timed_out, req.id)
        self.queue.append(req)
        self._service()

    def _timed_out(self, op_id: int) -> None:
        req = self.requests.get(op_id)
        if req is not None:
            req.timer = None
            self._finish(req, error("AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT"))

    def _finish(self, req: Request, exc: BaseException | None, result: Any = None) -> None:
        if req.state == DONE:
            return
        was = req.state
        req.state = DONE
        self.requests.pop(req.id, None)
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        if was == QUEUED:
            try:
                self.queue.remove(req)
            except ValueError:
                pass
        else:
            if self.in_flight.get(req.token) is req:
                del self.in_flight[req.token]
            for topic, path in req.paths:
                counts = self.paths.get(topic)
                if counts is not None:
                    counts[path or ""] -= 1
                    if counts[path or ""] <= 0:
                        del counts[path or ""]
                    if not counts:
                        del self.paths[topic]
            self.subs.release(req.id, req.filters)
        if exc is not None:
            req.future.try_set_exception(exc)
        else:
            req.future.try_set_result(result)
        if not self.closed:
            self._service()

    def _dequeue(self) -> None:
        while self.queue and not self.closed:
            req = self.queue[0]
            if req.token in self.in_flight:
                return  # same correlation token (or a token-less request) still running
            outcome = self.subs.acquire(req.id, Kind.REQUEST_RESPONSE, req.filters)
            if outcome in (Acquire.BLOCKED, Acquire.NO_CAPACITY):
                return
            self.queue.popleft()
            self.in_flight[req.token] = req
            for topic, path in req.paths:
                self.paths.setdefault(topic, collections.Counter())[path or ""] += 1
            req.state = SUBSCRIBING
            if outcome == Acquire.SUBSCRIBED:
                self._publish(req)

    def _publish(self, req: Request) -> None:
        req.state = PUBLISHED
        op_id = req.id

        def done(exc: BaseException | None) -> None:
            r = self.requests.get(op_id)
            if exc is not None and r is not None:
                self._finish(r, error("AWS_ERROR_MQTT_REQUEST_RESPONSE_PUBLISH_FAILURE"))

        self.adapter.publish(req.topic, req.payload, done)

    def _correlate(self, topic: str, payload: bytes) -> None:
        counts = self.paths.get(topic)
        if not counts:
            return
        document: Any = None
        parsed = False
        for path in list(counts):
            if path:
                if not parsed:
                    document = tokens.parse(payload)
                    parsed = True
                token = tokens.extract(document, path)
                if token is None:
                    continue
            else:
                token = ""
            req = self.in_flight.get(token)
            if req is not None and req.state == PUBLISHED and topic in req.response_topics:
                from ..mqtt_request_response import Response

                self._finish(req, None, Response(topic=topic, payload=bytes(payload)))

    # -- loop thread: streams ------------------------------------------------------------------
    def _open_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.state != S_NEW or self.closed:
            return
        self._try_open(stream)
        self._service()

    def _try_open(self, stream: Stream) -> None:
        outcome = self.subs.acquire(stream.id, Kind.STREAMING, [stream.filter])
        if outcome == Acquire.NO_CAPACITY:
            stream.state = S_HALTED
            self._status(stream, HALTED, error("AWS_ERROR_MQTT_REQUEST_RESPONSE_NO_SUBSCRIPTION_CAPACITY"))
        elif outcome == Acquire.BLOCKED:
            stream.state = S_BLOCKED
        elif outcome == Acquire.SUBSCRIBED:
            stream.state = S_OPEN
            self._status(stream, ESTABLISHED, None)
        else:
            stream.state = S_OPENING

    def _close_stream(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.state in (S_OPENING, S_OPEN):
            self.subs.release(stream.id, [stream.filter])
        stream.state = S_CLOSED
        if not self.closed:
            self._service()

    def _status(self, stream: Stream, kind: int, exc: BaseException | None) -> None:
        self.callbacks.post(stream.on_status, kind, exc)

    # -- loop thread: the pump -----------------------------------------------------------------
    def _service(self) -> None:
        for _ in range(1000):
            if not self.closed:
                self._dequeue()
            actions, events = self.subs.drain()
            if not actions and not events:
                return
            for what, topic_filter in actions:
                if what == "subscribe":
                    self.adapter.subscribe(topic_filter, self._make_sub_done(topic_filter))
                else:
                    self.adapter.unsubscribe(topic_filter, self._make_unsub_done(topic_filter))
            for ev in events:
                self._on_sub_event(ev)

    def _make_sub_done(self, topic_filter: str) -> Callable[[str | None, bool], None]:
        def done(error_name: str | None, retryable: bool) -> None:
            self.subs.on_subscribe_complete(topic_filter, error_name, retryable)
            self._service()
        return done

    def _make_unsub_done(self, topic_filter: str) -> Callable[[str | None], None]:
        def done(error_name: str | None) -> None:
            self.subs.on_unsubscribe_complete(topic_filter, error_name)
            self._service()
        return done

    def _on_sub_event(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "capacity":
            for blocked in list(self.streams.values()):
                if blocked.state == S_BLOCKED and not self.closed:
                    self._try_open(blocked)
            return
        _, _topic_filter, sub_kind, listeners = ev[:4]
        if sub_kind == Kind.STREAMING:
            for sid in listeners:
                stream = self.streams.get(sid)
                if stream is None:
                    continue
                if kind == "established" and stream.state in (S_OPENING, S_OPEN):
                    stream.state = S_OPEN
                    self._status(stream, ESTABLISHED, None)
                elif kind == "lost" and stream.state == S_OPEN:
                    stream.state = S_OPENING
                    self._status(stream, LOST, None)
                elif kind == "failed":
                    stream.state = S_HALTED
                    self._status(stream, HALTED, error("AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"))
            return
        for rid in listeners:
            req = self.requests.get(rid)
            if req is None:
                continue
            if kind == "established" and req.state == SUBSCRIBING:
                if all(self.subs.is_subscribed(f) for f in req.filters):
                    self._publish(req)
            elif kind == "failed" and req.state != DONE:
                self._finish(req, error("AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"))

    # -- loop thread: shutting down --------------------------------------------------------------
    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        exc_name = "AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN"
        for req in list(self.requests.values()):
            self._finish(req, error(exc_name))
        for stream in list(self.streams.values()):
            if stream.state in (S_OPENING, S_OPEN):
                self.subs.release(stream.id, [stream.filter])
            stream.state = S_CLOSED
        self.streams.clear()
        actions, _ = self.subs.drain()
        for what, topic_filter in actions:
            if what == "unsubscribe":
                self.adapter.unsubscribe(topic_filter, lambda _e: None)
        if self.attached:
            self.adapter.detach()
            self.attached = False
