"""The subscription manager: sans-I/O, no threads, no clock.

Each topic filter in use has one record, shared by every operation that listens on it
(reference counting by listener id).  Request-response and streaming subscriptions
have separate budgets; a record still being unsubscribed occupies its slot until the
UNSUBACK.  Inputs are method calls; outputs accumulate in :attr:`actions` (what to send:
``("subscribe", filter)`` / ``("unsubscribe", filter)``) and :attr:`events` (what to tell
operations), which the owner drains after every call.

Events:

* ``("established", filter, kind, listener_ids)`` — the filter is subscribed;
* ``("failed", filter, kind, listener_ids, error_name)`` — the broker refused it;
* ``("lost", filter, kind, listener_ids)`` — a reconnection without a session dropped it
  (it is subscribed again at once);
* ``("capacity",)`` — a slot was freed; blocked operations may retry.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any


class Kind(enum.IntEnum):
    REQUEST_RESPONSE = 0
    STREAMING = 1


class Acquire(enum.IntEnum):
    SUBSCRIBED = 0     # every filter is already subscribed
    SUBSCRIBING = 1    # listening; "established" events follow
    BLOCKED = 2        # no room now; retry after a "capacity" event
    NO_CAPACITY = 3    # can never fit (streaming budget full of live subscriptions)


class Status(enum.IntEnum):
    UNSUBSCRIBED = 0
    SUBSCRIBING = 1
    SUBSCRIBED = 2
    UNSUBSCRIBING = 3


class Record:
    __slots__ = ("filter", "kind", "listeners", "status")

    def __init__(self, topic_filter: str, kind: Kind) -> None:
        self.filter = topic_filter
        self.kind = kind
        self.status = Status.UNSUBSCRIBED
        self.listeners: set[int] = set()

    def __repr__(self) -> str:
        return f"Record({self.filter!r}, {self.kind.name}, {self.status.name}, {sorted(self.listeners)})"


class SubscriptionManager:
    def __init__(self, max_request_response: int, max_streaming: int) -> None:
        self.max = {Kind.REQUEST_RESPONSE: max_request_response, Kind.STREAMING: max_streaming}
        self.records: dict[str, Record] = {}
        self.connected = False
        self.actions: list[tuple[str, str]] = []
        self.events: list[tuple[Any, ...]] = []

    # -- queries -----------------------------------------------------------------------
    def used(self, kind: Kind, include_unsubscribing: bool = True) -> int:
        return sum(1 for r in self.records.values() if r.kind == kind
                   and (include_unsubscribing or r.status != Status.UNSUBSCRIBING))

    def is_subscribed(self, topic_filter: str) -> bool:
        r = self.records.get(topic_filter)
        return r is not None and r.status == Status.SUBSCRIBED

    # -- operations ----------------------------------------------------------------------
    def acquire(self, listener: int, kind: Kind, filters: Iterable[str]) -> Acquire:
        wanted = list(dict.fromkeys(filters))
        new = 0
        for f in wanted:
            r = self.records.get(f)
            if r is None:
                new += 1
            elif r.kind != kind or r.status == Status.UNSUBSCRIBING:
                return Acquire.BLOCKED
        limit = self.max[kind]
        if kind == Kind.STREAMING and self.used(kind, include_unsubscribing=False) + new > limit:
            return Acquire.NO_CAPACITY
        if self.used(kind) + new > limit:
            return Acquire.BLOCKED
        all_subscribed = True
        for f in wanted:
            r = self.records.get(f)
            if r is None:
                r = self.records[f] = Record(f, kind)
            r.listeners.add(listener)
            if r.status != Status.SUBSCRIBED:
                all_subscribed = False
                if r.status == Status.UNSUBSCRIBED and self.connected:
                    self._subscribe(r)
        return Acquire.SUBSCRIBED if all_subscribed else Acquire.SUBSCRIBING

    def release(self, listener: int, filters: Iterable[str]) -> None:
        for f in dict.fromkeys(filters):
            r = self.records.get(f)
            if r is None or listener not in r.listeners:
                continue
            r.listeners.discard(listener)
            if not r.listeners:
                self._idle(r)

    def _idle(self, r: Record) -> None:
        """A record nobody listens to any more: unsubscribe it or forget it."""
        if r.status == Status.SUBSCRIBED:
            if self.connected:
                r.status = Status.UNSUBSCRIBING
                self.actions.append(("unsubscribe", r.filter))
            else:
                self._forget(r)
        elif r.status == Status.UNSUBSCRIBED:
            self._forget(r)
        # SUBSCRIBING: decided when the SUBACK arrives; UNSUBSCRIBING: already going

    def _forget(self, r: Record) -> None:
        if self.records.get(r.filter) is r:
            del self.records[r.filter]
            self.events.append(("capacity",))

    def _subscribe(self, r: Record) -> None:
        r.status = Status.SUBSCRIBING
        self.actions.append(("subscribe", r.filter))

    # -- results from the protocol client -------------------------------------------------
    def on_subscribe_complete(self, topic_filter: str, error_name: str | None, retryable: bool) -> None:
        r = self.records.get(topic_filter)
        if r is None or r.status != Status.SUBSCRIBING:
            return
        if error_name is None:
            r.status = Status.SUBSCRIBED
            if not r.listeners:
                self._idle(r)
            else:
                self.events.append(("established", r.filter, r.kind, set(r.listeners)))
            return
        r.status = Status.UNSUBSCRIBED
        if not r.listeners:
            self._forget(r)
        elif retryable or not self.connected:
            if self.connected:
                self._subscribe(r)  # try again at once; a disconnection waits for the next CONNACK
        else:
            listeners = set(r.listeners)
            r.listeners.clear()
            self._forget(r)
            self.events.append(("failed", r.filter, r.kind, listeners, error_name))

    def on_unsubscribe_complete(self, topic_filter: str, error_name: str | None) -> None:
        r = self.records.get(topic_filter)
        if r is None or r.status != Status.UNSUBSCRIBING:
            return
        r.status = Status.UNSUBSCRIBED
        self._forget(r)

    def on_connected(self, rejoined_session: bool) -> None:
        self.connected = True
        for r in list(self.records.values()):
            if r.status == Status.SUBSCRIBED and not rejoined_session:
                r.status = Status.UNSUBSCRIBED
                if r.listeners:
                    self.events.append(("lost", r.filter, r.kind, set(r.listeners)))
            elif r.status == Status.UNSUBSCRIBING and not rejoined_session:
                r.status = Status.UNSUBSCRIBED  # the new session has no such subscription
            if r.status == Status.UNSUBSCRIBED:
                if r.listeners:
                    self._subscribe(r)
                else:
                    self._forget(r)
            elif r.status == Status.SUBSCRIBED and not r.listeners:
                self._idle(r)

    def on_disconnected(self) -> None:
        self.connected = False

    def drain(self) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        actions, events = self.actions, self.events
        self.actions, self.events = [], []
        return actions, events
