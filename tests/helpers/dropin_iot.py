"""Helpers for the AWS IoT Device SDK drop-in tests: a Device Shadow stand-in on Mosquitto.

``ShadowResponder(port)`` (paho-mqtt, independent of crtpy) answers the classic shadow
topics of every thing, as AWS IoT does:

* ``$aws/things/<thing>/shadow/get`` -> ``.../get/accepted`` with the stored document and
  the request's ``clientToken`` (``.../get/rejected`` with code 404 when the thing has no
  shadow);
* ``$aws/things/<thing>/shadow/update`` -> ``.../update/accepted`` (``clientToken``,
  ``version``), then ``.../update/documents`` with previous/current snapshots.

``shadows`` maps thing names to their reported state; ``requests`` logs what came in.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as paho

__all__ = ["ShadowResponder"]


class ShadowResponder:
    def __init__(self, port: int, shadows: dict[str, dict] | None = None) -> None:
        self.lock = threading.Lock()
        self.shadows: dict[str, dict] = {k: dict(v) for k, v in (shadows or {}).items()}
        self.versions: dict[str, int] = {k: 1 for k in self.shadows}
        self.requests: list[tuple[str, dict]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"shadow-service-{port}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([("$aws/things/+/shadow/get", 1), ("$aws/things/+/shadow/update", 1)])
        if not subscribed.wait(10):
            self.close()
            raise RuntimeError("shadow responder could not subscribe")

    def _send(self, topic: str, body: dict) -> None:
        self.client.publish(topic, json.dumps(body), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            req = json.loads(msg.payload or b"{}")
        except ValueError:
            req = {}
        thing, op = msg.topic.split("/")[2], msg.topic.split("/")[-1]
        base = f"$aws/things/{thing}/shadow/{op}"
        token = req.get("clientToken")
        now = int(time.time())
        with self.lock:
            self.requests.append((msg.topic, req))
            if op == "get":
                if thing not in self.shadows:
                    self._send(base + "/rejected", {"code": 404, "message": f"No shadow exists with name: '{thing}'",
                                                    "clientToken": token, "timestamp": now})
                    return
                self._send(base + "/accepted", {"state": {"reported": self.shadows[thing]},
                                                "version": self.versions[thing], "timestamp": now,
                                                "clientToken": token})
            elif op == "update":
                previous = dict(self.shadows.get(thing, {}))
                current = {**previous, **(req.get("state", {}).get("reported") or {})}
                self.shadows[thing] = current
                self.versions[thing] = self.versions.get(thing, 0) + 1
                version = self.versions[thing]
                self._send(base + "/accepted", {"state": req.get("state", {}), "version": version,
                                                "timestamp": now, "clientToken": token})
                self._send(base + "/documents", {
                    "previous": {"state": {"reported": previous}, "version": version - 1},
                    "current": {"state": {"reported": current}, "version": version},
                    "timestamp": now, "clientToken": token})

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
