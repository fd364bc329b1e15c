"""MQTT 3.1.1 benchmark: crtpy.mqtt vs the reference awscrt.mqtt (and paho-mqtt at
MQTT 3.1.1) against a private Mosquitto on loopback, in one process.

    .venv/bin/python benchmarks/bench_mqtt311.py [--qos0 100000] [--qos1 20000] [--rtt 2000]
        [--no-paho] [--interleave] [--no-inline | --inline]

Figures as in bench_mqtt.py (whose measuring helpers are reused): QoS 0 publish rate
(100-byte payloads; counted when written), QoS 1 publish rate (all PUBACKs received),
QoS 1 round trip to the client's own subscription p50/p99, broker CPU share.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_mqtt import PAYLOAD, PahoRunner, measure_all, parse_args, start_broker
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


def main() -> None:
    args = parse_args()

    import awscrt.mqtt as ref_mqtt

    from crtpy import mqtt as crt_mqtt

    broker = start_broker("bench-mqtt311-")
    try:
        makers: list[tuple[str, Callable[[], Any]]] = [
            ("crtpy", lambda: Mqtt311Runner(crt_mqtt, broker, "crtpy")),
            ("awscrt", lambda: Mqtt311Runner(ref_mqtt, broker, "awscrt"))]
        if not args.no_paho:
            makers.append(("paho-mqtt", lambda: PahoRunner(broker, v311=True)))
        results = measure_all(makers, broker, args)
        a, b = results["crtpy"], results["awscrt"]
        print(f"crtpy/reference: QoS0 rate x{a['qos0'] / b['qos0']:.2f}, QoS1 rate x{a['qos1'] / b['qos1']:.2f}, "
              f"latency p50 x{a['p50'] / b['p50']:.2f}, p99 x{a['p99'] / b['p99']:.2f}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
