# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""Inline reads of both MQTT clients (``crtpy._mqtt.stream``: the client's callback
worker waits for and reads the socket itself, and the loop takes the socket back while
callbacks run), against Mosquitto: callbacks that block on operations of their own
client, subscribe from a callback, the broker dropping the connection or the user
stopping the client while a worker reads, callback order, keep-alive, the switch."""
from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.mosquitto import Recorder, mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events

from crtpy import mqtt, mqtt5
from crtpy._mqtt import stream

pytestmark = pytest.mark.usefixtures("leak_check")

T = 20.0
Q1_5 = mqtt5.QoS.AT_LEAST_ONCE
Q1_3 = mqtt.QoS.AT_LEAST_ONCE


def uid() -> str:
    return uuid.uuid4().hex[:12]


def wait_until(cond: Callable[[], bool], timeout: float = T, what: str = "condition") -> None:
    """Poll ``cond`` (state owned by crtpy's threads, with no event to wait on)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class Received(list[bytes]):
    """Payloads appended by callbacks, with a wait for a condition on them."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def add(self, payload: bytes) -> None:
        with self.cond:
            self.append(payload)
            self.cond.notify_all()

    def wait(self, pred: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, T)


def reading_inline(driver: Any) -> bool:
    proto = driver.protocol
    return proto is not None and proto.reader


@pytest.fixture(params=[True, False], ids=["inline", "switched-off"])
def inline(request: Any) -> Iterator[bool]:
    old = stream.INLINE_READS, stream.INLINE_READS_311
    stream.INLINE_READS = stream.INLINE_READS_311 = request.param
    try:
        yield request.param
    finally:
        stream.INLINE_READS, stream.INLINE_READS_311 = old


# -- clients ---------------------------------------------------------------------------
class Client5:
    def __init__(self, port: int, on_publish: Callable[[Any], None] | None = None, **kw: Any) -> None:
        self.rec = Recorder()
        opts = self.rec.options(**kw)
        if on_publish is not None:
            opts["on_publish_callback_fn"] = on_publish
        self.client = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", port, **opts))
        self.client.start()
        self.rec.wait("success", timeout=T)
        self.driver: Any = self.client._driver

    def sub(self, topic: str) -> None:
        self.client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(topic, Q1_5)])).result(T)

    def pub(self, topic: str, payload: bytes) -> Any:
        return self.client.publish(mqtt5.PublishPacket(payload=payload, qos=Q1_5, topic=topic))

    def close(self) -> None:
        self.client.stop()
        self.rec.wait("stopped", timeout=T)


class Client311:
    def __init__(self, port: int, **kw: Any) -> None:
        self.ev = Events()
        kw.setdefault("reconnect_min_timeout_secs", 1)
        kw.setdefault("reconnect_max_timeout_secs", 1)
        self.conn = mqtt.Connection(mqtt.Client(), "127.0.0.1", port, f"inline-{uid()}", **self.ev.callbacks(), **kw)
        self.conn.connect().result(T)
        self.driver: Any = self.conn._driver

    def close(self) -> None:
        self.conn.disconnect().result(T)


def warm5(c: Client5, topic: str, got: list[Any]) -> None:
    """One round trip, so that the callback worker has become the reader."""
    n = len(got)
    c.pub(topic, b"warm").result(T)
    wait_until(lambda: len(got) > n, what="the warm-up message")


@contextlib.contextmanager
def recording(port: int, prefix: str) -> Iterator[tuple[Client5, str, Received]]:
    """A client subscribed to a fresh topic, recording the payloads it receives."""
    got = Received()
    c = Client5(port, lambda d: got.add(d.publish_packet.payload))
    try:
        topic = f"{prefix}/{uid()}"
        c.sub(topic)
        yield c, topic, got
    finally:
        c.close()


# -- MQTT 5 ----------------------------------------------------------------------------
def test_mqtt5_round_trips_read_inline(mosquitto: Any, inline: bool) -> None:
    with recording(mosquitto.port, "inline") as (c, topic, got):
        for i in range(50):
            c.pub(topic, b"%d" % i)
            got.wait(lambda i=i: len(got) > i)
        assert got == [b"%d" % i for i in range(50)]
        if inline:
            assert c.driver.inline_reads > 0
            assert c.driver.protocol.ep is not None
        else:
            assert c.driver.inline_reads == 0
            assert c.driver.protocol.ep is None


def test_mqtt5_callbacks_keep_their_order(mosquitto: Any, inline: bool) -> None:
    with recording(mosquitto.port, "inline") as (c, topic, got):
        n = 2000
        last = None
        for i in range(n):
            last = c.pub(topic, b"%d" % i)
            if i % 97 == 0:  # a mix of bursts (loop writes) and quiet moments (direct sends)
                last.result(T)
        assert last is not None
        last.result(T)
        got.wait(lambda: len(got) >= n)
        assert got == [b"%d" % i for i in range(n)]


def test_mqtt5_callback_publishes_and_waits(mosquitto: Any, inline: bool) -> None:
    """The callback blocks on a publish of its own client: that needs the PUBACK read
    while the callback runs (the worker handed the socket back to the loop)."""
    box: dict[str, Any] = {}
    results: list[Any] = []
    done = threading.Event()
    warm: list[Any] = []

    def on_pub(d: Any) -> None:
        p = d.publish_packet
        if p.payload == b"warm":
            warm.append(p)
            return
        if p.payload == b"go":
            try:
                for i in range(5):
                    results.append(box["c"].pub(box["other"], b"r%d" % i).result(5))
            except BaseException as e:  # noqa: BLE001 - reported to the test
                results.append(e)
            done.set()

    c = Client5(mosquitto.port, on_pub)
    box["c"] = c
    try:
        topic = f"inline/{uid()}"
        box["other"] = f"inline/{uid()}"
        c.sub(topic)
        warm5(c, topic, warm)
        if inline:
            wait_until(lambda: reading_inline(c.driver), what="the inline reader")
        c.pub(topic, b"go")
        assert done.wait(T)
        assert len(results) == 5
        assert all(isinstance(r, mqtt5.PublishCompletionData) for r in results), results
    finally:
        c.close()
        box.clear()


def test_mqtt5_callback_blocks_while_more_arrives(mosquitto: Any, inline: bool) -> None:
    """A callback that blocks does not stall reading: PUBACKs of publishes made
    meanwhile complete, and the messages queued behind it come after it, in order."""
    release = threading.Event()
    got = Received()
    warm: list[Any] = []

    def on_pub(d: Any) -> None:
        p = d.publish_packet.payload
        if p == b"warm":
            warm.append(p)
            return
        if p == b"block":
            assert release.wait(T)
        got.add(p)

    c = Client5(mosquitto.port, on_pub)
    try:
        topic = f"inline/{uid()}"
        c.sub(topic)
        warm5(c, topic, warm)
        c.pub(topic, b"block").result(T)
        # the worker is stuck in the callback: these complete only if the loop reads
        futs = [c.pub(topic, b"m%d" % i) for i in range(20)]
        for f in futs:
            f.result(T)
        release.set()
        got.wait(lambda: len(got) >= 21)
        assert got == [b"block"] + [b"m%d" % i for i in range(20)]
    finally:
        release.set()
        c.close()


def test_mqtt5_puback_not_held_behind_a_blocking_callback(mosquitto: Any, inline: bool) -> None:
    """The automatic PUBACK of a message leaves even while the callback of a later
    message (read in the same batch or after it) blocks."""
    release = threading.Event()
    blocked = threading.Event()
    warm: list[Any] = []

    def on_pub(d: Any) -> None:
        p = d.publish_packet.payload
        if p == b"warm":
            warm.append(p)
        elif p == b"m2":
            blocked.set()
            release.wait(T)

    sub = Client5(mosquitto.port, on_pub)
    pub = Client5(mosquitto.port)
    try:
        topic = f"inline/{uid()}"
        sub.sub(topic)
        n = len(warm)
        pub.pub(topic, b"warm").result(T)
        wait_until(lambda: len(warm) > n, what="the warm-up message")
        for _ in range(5):
            f1, f2 = pub.pub(topic, b"m1"), pub.pub(topic, b"m2")
            f1.result(T)
            f2.result(T)
            assert blocked.wait(T)
            # m1's PUBACK is not left in the inbox until m2's callback returns
            # (at once with the fix; without it, only at some unrelated later write)
            wait_until(lambda: not sub.driver.incoming, timeout=5, what="m1's PUBACK to leave")
            blocked.clear()
            release.set()
            wait_until(lambda: not sub.driver.incoming, what="m2's PUBACK to leave")
            release.clear()
    finally:
        release.set()
        pub.close()
        sub.close()


def test_mqtt5_subscribe_from_callback(mosquitto: Any, inline: bool) -> None:
    box: dict[str, Any] = {}
    got = Received()
    warm: list[Any] = []
    sub_result: list[Any] = []

    def on_pub(d: Any) -> None:
        p = d.publish_packet
        if p.payload == b"warm":
            warm.append(p)
            return
        if p.payload == b"subscribe":
            c = box["c"]
            sub_result.append(c.client.subscribe(mqtt5.SubscribePacket(
                [mqtt5.Subscription(box["second"], Q1_5)])).result(5))
            c.pub(box["second"], b"on-second").result(5)
        got.add(p.payload)

    c = Client5(mosquitto.port, on_pub)
    box["c"] = c
    try:
        topic = f"inline/{uid()}"
        box["second"] = f"inline/{uid()}"
        c.sub(topic)
        warm5(c, topic, warm)
        c.pub(topic, b"subscribe")
        got.wait(lambda: b"on-second" in got)
        assert isinstance(sub_result[0], mqtt5.SubackPacket)
        assert got == [b"subscribe", b"on-second"]
    finally:
        c.close()
        box.clear()


def test_mqtt5_broker_drop_while_worker_reads(mosquitto: Any, inline: bool) -> None:
    got = Received()
    c = Client5(mosquitto.port, lambda d: got.add(d.publish_packet.payload), min_reconnect_delay_ms=100, max_reconnect_delay_ms=200)
    try:
        topic = f"inline/{uid()}"
        c.sub(topic)
        warm5(c, topic, got)
        if inline:
            wait_until(lambda: reading_inline(c.driver), what="the inline reader")
        mosquitto.kill()
        c.rec.wait("disconnection", timeout=T)
        mosquitto.start()
        c.rec.wait("success", count=2, timeout=T)
        c.sub(topic)  # (a new session)
        n = len(got)
        c.pub(topic, b"after").result(T)
        got.wait(lambda: len(got) > n)
        assert got[-1] == b"after"
        if inline:
            wait_until(lambda: reading_inline(c.driver), what="the inline reader after reconnecting")
    finally:
        c.close()


def test_mqtt5_stop_while_worker_reads(mosquitto: Any, inline: bool) -> None:
    got: list[bytes] = []
    c = Client5(mosquitto.port, lambda d: got.append(d.publish_packet.payload))
    topic = f"inline/{uid()}"
    c.sub(topic)
    warm5(c, topic, got)
    proto = c.driver.protocol
    ep, dup = proto.ep, proto.dup
    if inline:
        wait_until(lambda: reading_inline(c.driver), what="the inline reader")
        assert ep is not None
    c.close()
    # the reader let go of the connection and closed its descriptors
    wait_until(lambda: not proto.reader, what="the reader to let go")
    assert proto.ep is None and proto.dup is None and proto.wake_fd == -1
    assert c.driver.callbacks._waker == -1  # posts no longer write to a closed eventfd
    assert dup.fileno() == -1
    if ep is not None:
        assert ep.closed
    # and the client starts again
    c.client.start()
    c.rec.wait("success", count=2, timeout=T)
    c.sub(topic)
    c.pub(topic, b"again").result(T)
    wait_until(lambda: b"again" in got, what="a message after the restart")
    c.close()


def test_mqtt5_keep_alive_while_reading_inline(mosquitto: Any) -> None:
    got: list[bytes] = []
    c = Client5(mosquitto.port, lambda d: got.append(d.publish_packet.payload),
                connect_options=mqtt5.ConnectPacket(keep_alive_interval_sec=1), ping_timeout_ms=500)
    try:
        topic = f"inline/{uid()}"
        c.sub(topic)
        end = time.monotonic() + 2.5
        i = 0
        while time.monotonic() < end:  # a trickle: the worker keeps reading (and PINGRESPs)
            c.pub(topic, b"%d" % i).result(T)
            i += 1
            time.sleep(0.02)
        assert not c.rec.of("disconnection")
        wait_until(lambda: len(got) == i, what="every message")
    finally:
        c.close()


# -- spinning for the broker's answer (stream.INLINE_SPIN_SEC, crtpy._runtime.spin) ---------
@pytest.fixture
def spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    from crtpy._runtime import spin

    monkeypatch.setattr(spin, "ENABLED", True)  # (off by default on a single CPU)


def round_trips(c: Client5, topic: str, got: Received, n: int, qos: Any = Q1_5) -> None:
    """``n`` publishes, each waited for (so each can go out directly)."""
    base = len(got)
    for i in range(n):
        c.client.publish(mqtt5.PublishPacket(payload=b"%d" % i, qos=qos, topic=topic))
        got.wait(lambda i=i: len(got) > base + i)
    assert got[base:] == [b"%d" % i for i in range(n)]


def test_mqtt5_reader_spins_for_the_answer_to_a_direct_publish(mosquitto: Any, spinning: None) -> None:
    with recording(mosquitto.port, "spin") as (c, topic, got):
        warm5(c, topic, got)
        spinner = c.driver.protocol.spinner
        before = spinner.spins
        round_trips(c, topic, got, 30)
        assert spinner.spins > before  # kicked (asleep) or told (awake) by the sends
        assert c.driver.inline_reads > 0


def test_mqtt5_no_spin_without_an_answer_due(mosquitto: Any, spinning: None) -> None:
    """QoS 0 publishes get no answer from the broker: nobody spins for them."""
    with recording(mosquitto.port, "spin") as (c, topic, got):
        warm5(c, topic, got)
        spinner = c.driver.protocol.spinner
        before = spinner.spins
        for i in range(20):
            c.client.publish(mqtt5.PublishPacket(payload=b"q0", qos=mqtt5.QoS.AT_MOST_ONCE,
                                                 topic=f"spin/{uid()}")).result(T)
        assert spinner.spins == before and not c.driver.protocol.answer_due


@pytest.mark.parametrize("switch", ["spin.ENABLED", "INLINE_SPIN_SEC"])
def test_mqtt5_spin_switched_off(mosquitto: Any, monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    from crtpy._runtime import spin

    if switch == "spin.ENABLED":
        monkeypatch.setattr(spin, "ENABLED", False)
    else:
        monkeypatch.setattr(spin, "ENABLED", True)
        monkeypatch.setattr(stream, "INLINE_SPIN_SEC", 0.0)
    with recording(mosquitto.port, "spin") as (c, topic, got):
        round_trips(c, topic, got, 20)
        assert c.driver.protocol.spinner.spins == 0


def test_mqtt5_spinning_reader_and_blocking_callbacks(mosquitto: Any, spinning: None) -> None:
    """A callback that publishes and waits for its PUBACK while the reader spins for
    answers: the loop reads meanwhile, nothing is lost or reordered."""
    got = Received()
    box: dict[str, Any] = {}  # (the client, without a reference cycle through the callback)
    topic = f"spin/{uid()}"

    def on_publish(d: Any) -> None:
        payload = d.publish_packet.payload
        if payload.startswith(b"ask"):
            box["c"].pub(f"{topic}/echo", b"echo" + payload[3:]).result(T)
        got.add(payload)

    c = box["c"] = Client5(mosquitto.port, on_publish)
    try:
        c.sub(topic)
        c.sub(f"{topic}/echo")
        for i in range(20):
            c.pub(topic, b"ask%d" % i)
            got.wait(lambda i=i: b"echo%d" % i in got and b"ask%d" % i in got)
        assert [p for p in got if p.startswith(b"ask")] == [b"ask%d" % i for i in range(20)]
        assert [p for p in got if p.startswith(b"echo")] == [b"echo%d" % i for i in range(20)]
        # answers read by the loop (while callbacks ran) leave no stale flag behind
        wait_until(lambda: not c.driver.protocol.answer_due, what="no answer due")
    finally:
        c.close()
        box.clear()


# -- MQTT 3.1.1 ------------------------------------------------------------------------
def test_mqtt311_callback_publishes_and_waits(mosquitto: Any, inline: bool) -> None:
    c = Client311(mosquitto.port)
    try:
        topic = f"inline/{uid()}"
        other = f"inline/{uid()}"
        results: list[Any] = []
        done = threading.Event()
        got: list[bytes] = []

        def cb(topic: str, payload: bytes, **kw: Any) -> None:
            got.append(payload)
            if payload == b"go":
                try:
                    for i in range(5):
                        results.append(c.conn.publish(other, b"r%d" % i, Q1_3)[0].result(5))
                    # and a subscribe from the callback
                    results.append(c.conn.subscribe(other, Q1_3, cb)[0].result(5))
                except BaseException as e:  # noqa: BLE001 - reported to the test
                    results.append(e)
                done.set()

        c.conn.subscribe(topic, Q1_3, cb)[0].result(T)
        c.conn.publish(topic, b"warm", Q1_3)[0].result(T)
        wait_until(lambda: b"warm" in got, what="the warm-up message")
        if inline:
            wait_until(lambda: reading_inline(c.driver), what="the inline reader")
            assert c.driver.inline_reads > 0
        c.conn.publish(topic, b"go", Q1_3)
        assert done.wait(T)
        assert len(results) == 6 and all(isinstance(r, dict) for r in results), results
        c.conn.publish(other, b"second", Q1_3)[0].result(T)
        wait_until(lambda: b"second" in got, what="a message on the topic subscribed from the callback")
    finally:
        c.close()


def test_mqtt311_order_and_blocking_callback(mosquitto: Any, inline: bool) -> None:
    c = Client311(mosquitto.port)
    try:
        topic = f"inline/{uid()}"
        release = threading.Event()
        got = Received()

        def cb(topic: str, payload: bytes, **kw: Any) -> None:
            if payload == b"block":
                assert release.wait(T)
            got.add(payload)

        c.conn.subscribe(topic, Q1_3, cb)[0].result(T)
        c.conn.publish(topic, b"block", Q1_3)[0].result(T)
        futs = [c.conn.publish(topic, b"m%d" % i, Q1_3)[0] for i in range(500)]
        for f in futs:
            f.result(T)  # read (PUBACKs) while the callback blocks
        release.set()
        got.wait(lambda: len(got) >= 501)
        assert got == [b"block"] + [b"m%d" % i for i in range(500)]
    finally:
        release.set()
        c.close()


def test_mqtt311_broker_drop_and_disconnect_while_worker_reads(mosquitto: Any, inline: bool) -> None:
    c = Client311(mosquitto.port)
    topic = f"inline/{uid()}"
    got: list[bytes] = []
    c.conn.subscribe(topic, Q1_3, lambda topic, payload, **kw: got.append(payload))[0].result(T)
    c.conn.publish(topic, b"warm", Q1_3)[0].result(T)
    wait_until(lambda: b"warm" in got, what="the warm-up message")
    if inline:
        wait_until(lambda: reading_inline(c.driver), what="the inline reader")
    mosquitto.kill()
    c.ev.wait("interrupted", timeout=T)
    mosquitto.start()
    c.ev.wait("resumed", timeout=T)
    c.conn.subscribe(topic, Q1_3, lambda topic, payload, **kw: got.append(payload))[0].result(T)
    c.conn.publish(topic, b"after", Q1_3)[0].result(T)
    wait_until(lambda: b"after" in got, what="a message after the reconnect")
    if inline:
        wait_until(lambda: reading_inline(c.driver), what="the inline reader after reconnecting")
    c.close()  # while the worker reads
    c.ev.wait("closed", timeout=T)
    assert c.driver.protocol is None


_FORK_SCRIPT = r'''
import os, signal, sys, threading, time
from crtpy import mqtt5

port = int(sys.argv[1])

def client(tag):
    got = threading.Event()
    ok = threading.Event()
    c = mqtt5.Client(mqtt5.ClientOptions(
        "127.0.0.1", port, on_publish_callback_fn=lambda d: got.set(),
        on_lifecycle_event_connection_success_fn=lambda d: ok.set()))
    c.start()
    assert ok.wait(10)
    topic = "inline/fork/" + tag
    c.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(topic, mqtt5.QoS.AT_LEAST_ONCE)])).result(10)

    def round_trip():
        got.clear()
        c.publish(mqtt5.PublishPacket(payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE, topic=topic)).result(10)
        assert got.wait(10)

    return c, round_trip

c, rt = client("parent")
for _ in range(20):
    rt()
d = c._driver
end = time.monotonic() + 10
while not (d.protocol is not None and d.protocol.reader):  # fork while the worker reads
    assert time.monotonic() < end
    time.sleep(0.002)
pid = os.fork()
if pid == 0:
    signal.alarm(60)
    try:
        c2, rt2 = client("child")
        for _ in range(20):
            rt2()
        assert c2._driver.inline_reads > 0
        c2.stop()
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
for _ in range(20):
    rt()
assert d.inline_reads > 0
c.stop()
print("FORK-INLINE-OK")
'''


def test_mqtt5_fork_while_worker_reads(mosquitto: Any) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(mosquitto.port)], check=False,
                         capture_output=True,
                         text=True, timeout=90, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0 and "FORK-INLINE-OK" in out.stdout, out.stdout + out.stderr
