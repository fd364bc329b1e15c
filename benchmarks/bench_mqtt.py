"""MQTT benchmark: crtpy.mqtt5 vs the reference awscrt.mqtt5 (and paho-mqtt, MQTT 5)
against a private Mosquitto on loopback, in one process.

    .venv/bin/python benchmarks/bench_mqtt.py [--qos0 100000] [--qos1 20000] [--rtt 2000]
        [--no-paho] [--interleave] [--no-inline | --inline]

Figures: QoS 0 publish rate (100-byte payloads; a publish counts when the client has
written it), QoS 1 publish rate (all PUBACKs received), QoS 1 round-trip latency
(publish -> delivery to the client's own subscription, one message at a time) p50/p99.
The broker's CPU use during each run is printed: near 100% of a core means Mosquitto,
not the client, limits the rate.

``--interleave`` measures the round trips of all clients alternately, in blocks of 50,
instead of one client after the other: on a shared, noisy machine the load then drifts
over all clients alike, which makes the latency ratio much steadier.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from helpers.mosquitto import Mosquitto

PAYLOAD = b"x" * 100


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measure:
    def __init__(self, broker: Mosquitto) -> None:
        self.pid = broker.proc.pid  # type: ignore[union-attr]

    def __enter__(self) -> Self:
        self.t0 = time.perf_counter()
        self.c0 = _cpu_seconds(self.pid)
        self.p0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.broker_cpu = (_cpu_seconds(self.pid) - self.c0) / self.elapsed
        self.client_cpu = time.process_time() - self.p0  # all threads of this process


# -- crtpy / awscrt (same API) -----------------------------------------------------------
class Mqtt5Runner:
    def __init__(self, mod: Any, broker: Mosquitto, name: str) -> None:
        self.mod = mod
        self.name = name
        self.connected = threading.Event()
        self.stopped = threading.Event()
        self.on_message: Callable[[Any], None] | None = None
        m = mod
        self.client = m.Client(m.ClientOptions(
            broker.host, broker.port,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=lambda d: self.connected.set(),
            on_lifecycle_event_stopped_fn=lambda d: self.stopped.set()))
        self.client.start()
        if not self.connected.wait(10):
            raise RuntimeError(f"{name}: no connection")

    def _on_publish(self, data: Any) -> None:
        if self.on_message is not None:
            self.on_message(data.publish_packet)

    def publish_many(self, topic: str, n: int, qos: int) -> None:
        m = self.mod
        last = None
        pub = self.client.publish
        P = m.PublishPacket
        q = m.QoS(qos)
        for _ in range(n):
            last = pub(P(payload=PAYLOAD, qos=q, topic=topic))
        last.result(120)  # type: ignore[union-attr]

    def subscribe(self, topic: str) -> None:
        m = self.mod
        self.client.subscribe(m.SubscribePacket([m.Subscription(topic, m.QoS.AT_LEAST_ONCE)])).result(10)

    def publish_one(self, topic: str) -> None:
        m = self.mod
        self.client.publish(m.PublishPacket(payload=PAYLOAD, qos=m.QoS.AT_LEAST_ONCE, topic=topic))

    def close(self) -> None:
        self.client.stop()
        self.stopped.wait(10)


# -- paho-mqtt ---------------------------------------------------------------------------
class PahoRunner:
    """paho-mqtt speaking MQTT 5 (or 3.1.1 with ``v311``)."""

    name = "paho-mqtt"

    def __init__(self, broker: Mosquitto, v311: bool = False) -> None:
        import paho.mqtt.client as paho

        self.paho = paho
        self.connected = threading.Event()
        self.on_message: Callable[[Any], None] | None = None
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311 if v311 else paho.MQTTv5)
        # MQTT 5: larger windows make paho O(n) per PUBACK
        self.client.max_inflight_messages_set(65535 if v311 else 100)
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


def rate(runner: Any, broker: Mosquitto, n: int, qos: int) -> tuple[float, float, float]:
    """(messages/s, broker CPU share, client CPU microseconds per message)."""
    topic = f"bench/{runner.name}/q{qos}"
    runner.publish_many(topic, min(n, 2000), qos)  # warm-up
    with Measure(broker) as m:
        runner.publish_many(topic, n, qos)
    return n / m.elapsed, m.broker_cpu, m.client_cpu / n * 1e6


def latency(runner: Any, broker: Mosquitto, n: int) -> tuple[float, float]:
    """Round trips of one runner: 50 to warm up, then ``n`` measured."""
    return latency_interleaved([runner], n)[0]


def latency_interleaved(runners: list[Any], n: int, block: int = 50) -> list[tuple[float, float]]:
    """Round-trip latency (p50, p99 in ms) of each runner over ``n`` round trips, the
    runners taking turns in blocks of ``block`` (one block each to warm up first)."""
    got = threading.Event()
    samples: list[list[float]] = [[] for _ in runners]
    for r in runners:
        r.subscribe(f"bench/{r.name}/rtt")
        r.on_message = lambda p: got.set()
    for b in range(-1, (n + block - 1) // block):  # block -1 warms up
        for r, out in zip(runners, samples):
            topic = f"bench/{r.name}/rtt"
            for _ in range(block if b < 0 else min(block, n - b * block)):
                got.clear()
                t0 = time.perf_counter()
                r.publish_one(topic)
                if not got.wait(10):
                    raise RuntimeError(f"{r.name}: message lost")
                if b >= 0:
                    out.append(time.perf_counter() - t0)
    results = []
    for r, s in zip(runners, samples):
        r.on_message = None
        s.sort()
        results.append((statistics.median(s) * 1e3, s[int(len(s) * 0.99) - 1] * 1e3))
    return results


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qos0", type=int, default=100_000)
    ap.add_argument("--qos1", type=int, default=20_000)
    ap.add_argument("--rtt", type=int, default=2000)
    ap.add_argument("--no-paho", action="store_true")
    ap.add_argument("--interleave", action="store_true",
                    help="measure round trips of all clients alternately (steadier ratios on a noisy machine)")
    ap.add_argument("--no-inline", action="store_true",
                    help="crtpy without inline reads (crtpy._mqtt.stream.INLINE_READS[_311] = False), for A/B runs")
    ap.add_argument("--inline", action="store_true",
                    help="crtpy with inline reads in both clients (INLINE_READS and INLINE_READS_311 = True)")
    args = ap.parse_args()
    if args.no_inline or args.inline:
        from crtpy._mqtt import stream

        stream.INLINE_READS = stream.INLINE_READS_311 = bool(args.inline)
    return args


def start_broker(prefix: str) -> Mosquitto:
    return Mosquitto(tempfile.mkdtemp(prefix=prefix),
                     extra={"max_inflight_messages": 0, "max_queued_messages": 0}).start()


def measure_all(makers: list[tuple[str, Callable[[], Any]]], broker: Mosquitto,
                args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Run the three measurements for each runner in turn; print a line per runner."""
    results: dict[str, dict[str, float]] = {}
    if args.interleave:
        runners = []
        try:
            for _name, make in makers:
                runners.append(make())
            for (name, _make), r in zip(makers, runners):
                q0, c0, u0 = rate(r, broker, args.qos0, 0)
                q1, c1, u1 = rate(r, broker, args.qos1, 1)
                results[name] = {"qos0": q0, "qos0_cpu": c0, "qos1": q1, "qos1_cpu": c1,
                                 "qos0_us": u0, "qos1_us": u1}
            for (name, _make), (p50, p99) in zip(makers, latency_interleaved(runners, args.rtt)):
                results[name].update(p50=p50, p99=p99)
        finally:
            for r in runners:
                r.close()
    else:
        for name, make in makers:
            r = make()
            try:
                q0, c0, u0 = rate(r, broker, args.qos0, 0)
                q1, c1, u1 = rate(r, broker, args.qos1, 1)
                p50, p99 = latency(r, broker, args.rtt)
            finally:
                r.close()
            results[name] = {"qos0": q0, "qos0_cpu": c0, "qos1": q1, "qos1_cpu": c1, "p50": p50, "p99": p99,
                             "qos0_us": u0, "qos1_us": u1}
    for name, v in results.items():
        print(f"{name:10s} QoS0 {v['qos0']:10,.0f} msg/s ({v['qos0_us']:5.1f} us client CPU/msg, "
              f"broker CPU {v['qos0_cpu']:4.0%})   QoS1 {v['qos1']:9,.0f} msg/s ({v['qos1_us']:5.1f} us/msg, "
              f"broker CPU {v['qos1_cpu']:4.0%})   RTT p50 {v['p50']:6.3f} ms  p99 {v['p99']:6.3f} ms", flush=True)
    return results


def main() -> None:
    args = parse_args()

    import awscrt.mqtt5 as ref_mqtt5

    from crtpy import mqtt5 as crt_mqtt5

    broker = start_broker("bench-mqtt-")
    try:
        makers: list[tuple[str, Callable[[], Any]]] = [
            ("crtpy", lambda: Mqtt5Runner(crt_mqtt5, broker, "crtpy")),
            ("awscrt", lambda: Mqtt5Runner(ref_mqtt5, broker, "awscrt"))]
        if not args.no_paho:
            makers.append(("paho-mqtt", lambda: PahoRunner(broker)))
        results = measure_all(makers, broker, args)
        ours, ref = results["crtpy"], results["awscrt"]
        print(f"ratio crtpy/awscrt: QoS0 {ours['qos0'] / ref['qos0']:.2f}  QoS1 {ours['qos1'] / ref['qos1']:.2f}  "
              f"RTT p50 {ours['p50'] / ref['p50']:.2f} (lower is better)  p99 {ours['p99'] / ref['p99']:.2f}")
        print(f"client CPU per message crtpy/awscrt (lower is better): QoS0 {ours['qos0_us'] / ref['qos0_us']:.2f}  "
              f"QoS1 {ours['qos1_us'] / ref['qos1_us']:.2f}")
        print(f"load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        if "paho-mqtt" in results:
            pa = results["paho-mqtt"]
            print(f"ratio crtpy/paho:   QoS0 {ours['qos0'] / pa['qos0']:.2f}  QoS1 {ours['qos1'] / pa['qos1']:.2f}  "
                  f"RTT p50 {ours['p50'] / pa['p50']:.2f}")
        for name, r in results.items():
            for k in ("qos0", "qos1"):
                if r[f"{k}_cpu"] > 0.85:
                    print(f"note: during {name} {k.upper()} the broker used {r[f'{k}_cpu']:.0%} of a core: "
                          f"Mosquitto is (near) the bottleneck there")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
