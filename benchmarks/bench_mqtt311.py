"""MQTT 3.1.1 benchmark: crtpy.mqtt vs the reference awscrt.mqtt (and paho-mqtt at
MQTT 3.1.1) against a private Mosquitto on loopback, in one process.

    .venv/bin/python benchmarks/bench_mqtt311.py [--qos0 100000] [--qos1 20000] [--rtt 2000]

Figures as in bench_mqtt.py (whose measuring helpers are reused): QoS 0 publish rate
(100-byte payloads; counted when written), QoS 1 publish rate (all PUBACKs received),
QoS 1 round trip to the client's own subscription p50/p99, broker CPU share.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_mqtt import PAYLOAD, latency, rate
from helpers.mosquitto import Mosquitto


class Mqtt311Runner:
    def __init__(self, mod: Any, broker: Mosquitto, name: str) -> None:
        self.mod = mod
        self.name = name
        self.on_message: Callable[[Any], None] | None = None
        self.conn = mod.Connection(mod.Client(), broker.host, broker.port, f"bench311-{name}")
        self.conn.connect().result(10)

    def publish_many(self, topic: str, n: int, qos: int) -> None:
        # At most two windows in flight: the reference's 3.1.1 client refuses more than its
        # 16-bit packet-id space (AWS_ERROR_MQTT_QUEUE_FULL) when publishing faster than it sends.
        pub = self.conn.publish
        q = self.mod.QoS(qos)
        window = 10_000
        last = gate = None
        for i in range(n):
            last = pub(topic, PAYLOAD, q)[0]
            if i % window == window - 1:
                if gate is not None:
                    gate.result(120)
                gate = last
        last.result(120)  # type: ignore[union-attr]

    def subscribe(self, topic: str) -> None:
        def cb(topic: str, payload: bytes, **kw: Any) -> None:
            if self.on_message is not None:
                self.on_message(payload)

        self.conn.subscribe(topic, self.mod.QoS.AT_LEAST_ONCE, cb)[0].result(10)

    def publish_one(self, topic: str) -> None:
        self.conn.publish(topic, PAYLOAD, self.mod.QoS.AT_LEAST_ONCE)

    def close(self) -> None:
        self.conn.disconnect().result(10)


class Paho311Runner:
    name = "paho-mqtt"

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as paho

        self.connected = threading.Event()
        self.on_message: Callable[[Any], None] | None = None
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.max_inflight_messages_set(65535)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_message = lambda c, u, msg: self.on_message and self.on_message(msg)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("paho: no connection")

    def publish_many(self, topic: str, n: int, qos: int) -> None:
        pub = self.client.publish
        last = None
        for _ in range(n):
            last = pub(topic, PAYLOAD, qos)
        last.wait_for_publish(120)  # type: ignore[union-attr]

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, 1)
        done.wait(10)

    def publish_one(self, topic: str) -> None:
        self.client.publish(topic, PAYLOAD, 1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qos0", type=int, default=100_000)
    ap.add_argument("--qos1", type=int, default=20_000)
    ap.add_argument("--rtt", type=int, default=2000)
    ap.add_argument("--no-paho", action="store_true")
    args = ap.parse_args()

    import awscrt.mqtt as ref_mqtt

    from crtpy import mqtt as crt_mqtt

    broker = Mosquitto(tempfile.mkdtemp(prefix="bench-mqtt311-"),
                       extra={"max_inflight_messages": 0, "max_queued_messages": 0}).start()
    try:
        makers: list[tuple[str, Callable[[], Any]]] = [
            ("crtpy", lambda: Mqtt311Runner(crt_mqtt, broker, "crtpy")),
            ("awscrt", lambda: Mqtt311Runner(ref_mqtt, broker, "awscrt"))]
        if not args.no_paho:
            makers.append(("paho-mqtt", lambda: Paho311Runner(broker)))
        results: dict[str, dict[str, float]] = {}
        for name, make in makers:
            r = make()
            try:
                q0, c0, u0 = rate(r, broker, args.qos0, 0)
                q1, c1, u1 = rate(r, broker, args.qos1, 1)
                p50, p99 = latency(r, broker, args.rtt)
            finally:
                r.close()
            results[name] = {"qos0": q0, "qos1": q1, "p50": p50, "p99": p99}
            print(f"{name:10s} QoS0 {q0:10,.0f} msg/s ({u0:5.1f} us client CPU/msg, broker CPU {c0:4.0%})   "
                  f"QoS1 {q1:9,.0f} msg/s ({u1:5.1f} us/msg, broker CPU {c1:4.0%})   "
                  f"RTT p50 {p50:6.3f} ms  p99 {p99:6.3f} ms", flush=True)
        a, b = results["crtpy"], results["awscrt"]
        print(f"crtpy/reference: QoS0 rate x{a['qos0'] / b['qos0']:.2f}, QoS1 rate x{a['qos1'] / b['qos1']:.2f}, "
              f"latency p50 x{a['p50'] / b['p50']:.2f}, p99 x{a['p99'] / b['p99']:.2f}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
