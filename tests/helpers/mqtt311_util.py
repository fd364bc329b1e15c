"""Helpers for crtpy.mqtt (MQTT 3.1.1) tests: a recorder of lifecycle callbacks and
messages, and a factory of connections wired to it."""
from __future__ import annotations

import threading
import uuid
from typing import Any

__all__ = ["Events", "new_topic"]


def new_topic(prefix: str = "t311") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


class Events:
    """Collects lifecycle callbacks (``kind``, kwargs) and messages; waits for them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[dict[str, Any]] = []

    def add(self, kind: str, **kw: Any) -> None:
        with self.cond:
            self.events.append((kind, kw))
            self.cond.notify_all()

    def on_message(self, topic: str, payload: bytes, dup: bool, qos: Any, retain: bool, **kw: Any) -> None:
        with self.cond:
            self.messages.append({"topic": topic, "payload": payload, "dup": dup, "qos": qos, "retain": retain})
            self.cond.notify_all()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_connection_interrupted": lambda connection, error, **kw: self.add("interrupted", error=error),
            "on_connection_resumed": lambda connection, return_code, session_present, **kw: self.add(
                "resumed", return_code=return_code, session_present=session_present),
            "on_connection_success": lambda connection, callback_data, **kw: self.add("success", data=callback_data),
            "on_connection_failure": lambda connection, callback_data, **kw: self.add("failure", data=callback_data),
            "on_connection_closed": lambda connection, callback_data, **kw: self.add("closed", data=callback_data)}

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.cond:
            return [kw for k, kw in self.events if k == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len([1 for k, _ in self.events if k == kind]) >= count, timeout)
            if not ok:
                raise AssertionError(f"no {count}x {kind!r} within {timeout}s; got {[k for k, _ in self.events]}")
            return [kw for k, kw in self.events if k == kind][count - 1]

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"only {len(self.messages)} of {count} messages within {timeout}s")
            return list(self.messages)
