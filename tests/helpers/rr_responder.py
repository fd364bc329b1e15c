"""Helpers for the request-response tests: a service stand-in answering requests on
Mosquitto, and a connected MQTT5 client of either implementation.

The responder (paho-mqtt, independent of crtpy) subscribes to ``svc/+/get``.  A request
payload is JSON ``{"token": ..., "mode": ..., "delay": ..., "v": ...}``; it answers on
``svc/<name>/accepted`` (mode ``accept``, the default) or ``svc/<name>/rejected`` (mode
``reject``) with ``{"token": <token>, "echo": <v>}``, after ``delay`` seconds, or never
(mode ``never``).  It logs every request it received and every answer it sent, in order.
"""
from __future__ import annotations

import importlib
import json
import threading
import time
from concurrent.futures import Future
from typing import Any

import paho.mqtt.client as paho

__all__ = ["Responder", "Statuses", "connect_mqtt5", "impl", "request_options"]


class Responder:
    def __init__(self, port: int, pattern: str = "svc/+/get") -> None:
        self.lock = threading.Condition()
        self.log: list[tuple[str, Any]] = []   # ("get", payload dict) / ("sent", topic, payload dict)
        self.timers: list[threading.Timer] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"responder-{port}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(pattern, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("responder could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            req = json.loads(msg.payload)
        except ValueError:
            req = {}
        name = msg.topic.split("/")[1]
        with self.lock:
            self.log.append(("get", req))
            self.lock.notify_all()
        mode = req.get("mode", "accept")
        if mode == "never":
            return
        topic = f"svc/{name}/{'rejected' if mode == 'reject' else 'accepted'}"
        body = {"token": req.get("token"), "echo": req.get("v")}
        if "token_path" in req:  # nested token: {"a": {"b": token}}
            body = {"echo": req.get("v")}
            node = body
            *parents, last = req["token_path"].split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = req.get("token")

        def send() -> None:
            with self.lock:
                self.log.append(("sent", topic, body))
                self.lock.notify_all()
            client.publish(topic, json.dumps(body), qos=1)

        delay = float(req.get("delay", 0))
        if delay:
            t = threading.Timer(delay, send)
            t.daemon = True
            self.timers.append(t)
            t.start()
        else:
            send()

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_gets(self, count: int, timeout: float = 10.0) -> list[dict]:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.gets()) >= count, timeout):
                raise AssertionError(f"responder got {len(self.gets())} of {count} requests")
            return self.gets()

    def gets(self) -> list[dict]:
        return [e[1] for e in self.log if e[0] == "get"]

    def close(self) -> None:
        for t in self.timers:
            t.cancel()
        self.client.loop_stop()
        self.client.disconnect()


def impl(name: str) -> tuple[Any, Any]:
    """(mqtt5 module, mqtt_request_response module) of ``crtpy`` or ``awscrt``."""
    return (importlib.import_module(f"{name}.mqtt5"), importlib.import_module(f"{name}.mqtt_request_response"))


def connect_mqtt5(m5: Any, port: int, **kwargs: Any) -> tuple[Any, dict[str, list]]:
    """A started MQTT5 client of module ``m5``, connected to 127.0.0.1:``port``; also
    the lists of its connection-success / disconnection events (and, under ``"cond"``,
    the condition notified when one is added)."""
    cond = threading.Condition()
    events: dict[str, Any] = {"success": [], "disconnection": [], "cond": cond}
    first = Future()  # type: Future[None]

    def success(d: Any) -> None:
        with cond:
            events["success"].append(d)
            cond.notify_all()
        if not first.done():
            first.set_result(None)

    def disconnection(d: Any) -> None:
        with cond:
            events["disconnection"].append(d)
            cond.notify_all()

    opts: dict[str, Any] = {
        "host_name": "127.0.0.1", "port": port, "min_reconnect_delay_ms": 100, "max_reconnect_delay_ms": 300,
        "on_lifecycle_event_connection_success_fn": success,
        "on_lifecycle_event_disconnection_fn": disconnection}
    opts.update(kwargs)
    client = m5.Client(m5.ClientOptions(**opts))
    client.start()
    first.result(10)
    return client, events


def request_options(rr: Any, name: str, token: str | None, mode: str = "accept", delay: float = 0,
                    v: Any = None, filters: list[str] | None = None, token_path: str = "token",
                    **extra: Any) -> Any:
    """RequestOptions for service ``name`` of the responder."""
    body: dict[str, Any] = {"mode": mode, "delay": delay, "v": v}
    if token is not None:
        body["token"] = token
    body.update(extra)
    if token_path != "token":
        body["token_path"] = token_path
    path = token_path if token is not None else None
    return rr.RequestOptions(
        subscription_topic_filters=filters or [f"svc/{name}/accepted", f"svc/{name}/rejected"],
        response_paths=[rr.ResponsePath(f"svc/{name}/accepted", path),
                        rr.ResponsePath(f"svc/{name}/rejected", path)],
        publish_topic=f"svc/{name}/get", payload=json.dumps(body).encode(), correlation_token=token)


class Statuses:
    """Collects a streaming operation's events (from callback threads) and lets the test
    wait for them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple] = []
        self.threads: set[str] = set()

    def status(self, ev: Any) -> None:
        with self.cond:
            self.threads.add(threading.current_thread().name)
            self.events.append(("status", int(ev.type), getattr(ev.error, "name", None)))
            self.cond.notify_all()

    def publish(self, ev: Any) -> None:
        with self.cond:
            self.threads.add(threading.current_thread().name)
            self.events.append(("publish", ev.topic, ev.payload))
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f"only {self.events} within {timeout}s (wanted {count})")
            return list(self.events)

    def snapshot(self) -> list[tuple]:
        with self.cond:
            return list(self.events)


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
