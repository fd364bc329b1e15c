# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""The direct send of both MQTT clients (an operation written by the submitting thread
on a quiet plain-TCP connection, see ``crtpy._mqtt.stream``), against Mosquitto:
operations from several threads, mixing direct and loop writes, reach the broker in
submission order; nothing is lost or doubled across dropped connections and broker
restarts; partial and failed direct writes are finished by the loop; TLS and WebSocket
connections never send directly."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.mosquitto import Recorder, mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events
from helpers.mqtt_direct import DirectStats, direct_stats, install_flaky, sometimes_busy  # noqa: F401 - fixture

from crtpy import io, mqtt, mqtt5

pytestmark = pytest.mark.usefixtures("leak_check")

T = 20.0
Q1 = mqtt.QoS.AT_LEAST_ONCE


def uid() -> str:
    return uuid.uuid4().hex[:12]


# -- clients ---------------------------------------------------------------------------
class Client311:
    """A crtpy.mqtt Connection that records every message it receives (on_message)."""

    def __init__(self, port: int, client: mqtt.Client | None = None, host: str = "127.0.0.1",
                 **kw: Any) -> None:
        self.ev = Events()
        kw.setdefault("reconnect_min_timeout_secs", 1)
        kw.setdefault("reconnect_max_timeout_secs", 1)
        self.conn = mqtt.Connection(client or mqtt.Client(), host, port, f"direct-{uid()}",
                                    **self.ev.callbacks(), **kw)
        self.conn.on_message(self.ev.on_message)
        self.conn.connect().result(T)
        self.driver: Any = self.conn._driver

    def sub(self, topic: str) -> Any:
        return self.conn.subscribe(topic, Q1)[0]

    def unsub(self, topic: str) -> Any:
        return self.conn.unsubscribe(topic)[0]

    def pub(self, topic: str, payload: bytes) -> Any:
        return self.conn.publish(topic, payload, Q1)[0]

    def received(self) -> list[tuple[str, bytes]]:
        with self.ev.cond:
            return [(m["topic"], m["payload"]) for m in self.ev.messages]

    def wait_for(self, pred: Callable[[list[tuple[str, bytes]]], bool]) -> list[tuple[str, bytes]]:
        with self.ev.cond:
            ok = self.ev.cond.wait_for(lambda: pred([(m["topic"], m["payload"]) for m in self.ev.messages]), T)
        got = self.received()
        assert ok, f"timed out; received {len(got)} messages"
        return got

    def close(self) -> None:
        self.conn.disconnect().result(T)

    def drop(self) -> None:
        d = self.driver
        d.loop_thread.call_soon(lambda: d.transport.abort() if d.transport is not None else None)

    def settled(self) -> None:
        core = self.driver.core
        assert self.driver.loop_thread.run_sync(lambda: (dict(core.inflight), list(core.queue),
                                                         set(core.pids_used)), timeout=T) == ({}, [], set())


class Client5:
    """A crtpy.mqtt5 Client that records every message it receives."""

    def __init__(self, port: int, **kw: Any) -> None:
        self.rec = Recorder()
        opts = self.rec.options(min_reconnect_delay_ms=100, max_reconnect_delay_ms=200, **kw)
        self.client = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", port, **opts))
        self.client.start()
        self.rec.wait("success")
        self.driver: Any = self.client._driver

    def sub(self, topic: str) -> Any:
        return self.client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(topic, mqtt5.QoS.AT_LEAST_ONCE)]))

    def unsub(self, topic: str) -> Any:
        return self.client.unsubscribe(mqtt5.UnsubscribePacket([topic]))

    def pub(self, topic: str, payload: bytes) -> Any:
        return self.client.publish(mqtt5.PublishPacket(payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE, topic=topic))

    def received(self) -> list[tuple[str, bytes]]:
        with self.rec.cond:
            return [(p.topic, p.payload) for p in self.rec.messages]

    def wait_for(self, pred: Callable[[list[tuple[str, bytes]]], bool]) -> list[tuple[str, bytes]]:
        with self.rec.cond:
            ok = self.rec.cond.wait_for(lambda: pred([(p.topic, p.payload) for p in self.rec.messages]), T)
        got = self.received()
        assert ok, f"timed out; received {len(got)} messages"
        return got

    def close(self) -> None:
        n = len(self.rec.of("stopped"))
        self.client.stop()
        self.rec.wait("stopped", n + 1)

    def drop(self) -> None:
        d = self.driver

        def abort() -> None:
            p = d.protocol
            if p is not None and p.transport is not None:
                p.transport.abort()

        d.loop_thread.call_soon(abort)

    def settled(self) -> None:
        core = self.driver.core
        assert self.driver.loop_thread.run_sync(lambda: (dict(core.unacked), list(core.queue),
                                                         core.inflight_qos1), timeout=T) == ({}, [], 0)


KINDS = {"311": Client311, "5": Client5}
# A 3.1.1 clean session cancels queued operations on reconnect (as the reference does);
# these tests want them re-sent.  (MQTT 5 keeps QoS 1 publishes by default.)
_SESSION: dict[str, Any] = {"keep_session": True}


class _Kind:
    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def __call__(self, port: int, **kw: Any) -> Any:
        if kw.pop("keep_session", False) and self.cls is Client311:
            kw["clean_session"] = False
        return self.cls(port, **kw)


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> Any:
    return _Kind(KINDS[request.param])


# -- order -----------------------------------------------------------------------------
def test_direct_send_is_used_and_delivers(mosquitto, direct_stats: DirectStats, kind: Any) -> None:
    c = kind(mosquitto.port)
    try:
        assert c.driver.protocol.direct is not None
        t = f"direct/{uid()}"
        c.sub(t).result(T)
        for i in range(20):
            c.pub(t, b"%d" % i).result(T)  # the connection is quiet before each publish
        got = c.wait_for(lambda m: len(m) >= 20)
        assert got == [(t, b"%d" % i) for i in range(20)]
        # (a publish that finds the loop holding the lock, e.g. still busy with the
        # previous echo, goes through the loop instead)
        assert direct_stats.direct >= 10
        c.settled()
    finally:
        c.close()


@pytest.mark.parametrize("busy", [False, True])
def test_threads_mixing_direct_and_loop_writes_keep_order(mosquitto, direct_stats: DirectStats,
                                                          kind: Any, busy: bool, monkeypatch) -> None:
    """Per thread: SUBSCRIBE t, PUBLISH t "in", UNSUBSCRIBE t, PUBLISH t "out", without
    waiting.  The broker applies them in wire order, so the publisher receives exactly
    every "in" and no "out"; a watcher of the whole tree sees each thread's publishes in
    order.  ``busy``: a third of the direct attempts find the transport busy (as when
    the loop has just written), so loop and direct writes alternate densely."""
    if busy:
        sometimes_busy(monkeypatch)
    base = f"order/{uid()}"
    c = kind(mosquitto.port)
    watcher = kind(mosquitto.port)
    n_threads, n = 4, 40
    futures: list[Any] = []
    flock = threading.Lock()
    errors: list[BaseException] = []
    try:
        watcher.sub(f"{base}/#").result(T)

        def work(k: int) -> None:
            try:
                mine = []
                for i in range(n):
                    t = f"{base}/{k}/{i}"
                    mine += [c.sub(t), c.pub(t, b"in"), c.unsub(t), c.pub(t, b"out")]
                    if i % 8 == 7:
                        mine[-1].result(T)  # let the connection go quiet now and then
                with flock:
                    futures.extend(mine)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(T)
        assert not errors
        for f in futures:
            f.result(T)
        # A marker after everything: once it is back, every "out" would have been too.
        marker = f"{base}/marker"
        c.sub(marker).result(T)
        c.pub(marker, b"end").result(T)
        got = c.wait_for(lambda m: (marker, b"end") in m)
        assert sorted(got) == sorted([(f"{base}/{k}/{i}", b"in") for k in range(n_threads) for i in range(n)]
                                     + [(marker, b"end")])
        seen = watcher.wait_for(lambda m: len(m) >= n_threads * n * 2 + 1)
        for k in range(n_threads):
            mine = [(t, p) for t, p in seen if t.startswith(f"{base}/{k}/")]
            assert mine == [(f"{base}/{k}/{i}", p) for i in range(n) for p in (b"in", b"out")]
        assert direct_stats.direct > 0 and direct_stats.posted > 0
        c.settled()
    finally:
        c.close()
        watcher.close()


# -- connection loss -------------------------------------------------------------------
def test_dropped_connections_while_threads_publish(mosquitto, direct_stats: DirectStats, kind: Any) -> None:
    """QoS 1 publishes from threads while the connection is cut twice: every publish
    completes (with its own packet id), the watcher gets every payload, and nothing is
    left in flight."""
    base = f"drop/{uid()}"
    c = kind(mosquitto.port, **_SESSION)
    watcher = kind(mosquitto.port)
    n_threads, n = 3, 150
    futures: list[Any] = []
    flock = threading.Lock()
    half = threading.Barrier(n_threads + 1)
    try:
        watcher.sub(f"{base}/#").result(T)

        def work(k: int) -> None:
            mine = []
            for i in range(n):
                mine.append(c.pub(f"{base}/{k}", b"%d-%d" % (k, i)))
                if i == n // 2:
                    half.wait(T)
                if i % 10 == 9:
                    mine[-1].result(T)
            with flock:
                futures.extend(mine)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        c.drop()
        half.wait(T)
        c.drop()
        for th in threads:
            th.join(T)
        results = [f.result(T) for f in futures]
        if kind.cls is Client311:
            assert all(r["packet_id"] > 0 for r in results)
        want = {(f"{base}/{k}", b"%d-%d" % (k, i)) for k in range(n_threads) for i in range(n)}
        got = watcher.wait_for(lambda m: want <= set(m))
        assert set(got) == want  # duplicates (re-sent with DUP) allowed, nothing missing
        c.settled()
    finally:
        c.close()
        watcher.close()


def test_broker_restart_while_threads_publish(mosquitto, direct_stats: DirectStats, kind: Any) -> None:
    c = kind(mosquitto.port, **_SESSION)
    n_threads, n = 3, 60
    futures: list[Any] = []
    flock = threading.Lock()
    started = threading.Barrier(n_threads + 1)
    try:
        def work(k: int) -> None:
            mine = []
            for i in range(n):
                mine.append(c.pub(f"restart/{k}", b"%d" % i))
                if i == 5:
                    started.wait(T)
            with flock:
                futures.extend(mine)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        started.wait(T)
        mosquitto.restart()
        for th in threads:
            th.join(T)
        for f in futures:
            f.result(T)  # QoS 1: queued while offline, re-sent after the reconnect
        c.settled()
    finally:
        c.close()


# -- partial and failed direct writes ----------------------------------------------------
@pytest.mark.parametrize("mode", ["partial", "eagain", "epipe"])
def test_short_direct_writes_are_finished_by_the_loop(mosquitto, direct_stats: DirectStats, kind: Any,
                                                      mode: str) -> None:
    c = kind(mosquitto.port)
    try:
        flaky = install_flaky(c.driver, mode)
        t = f"short/{uid()}"
        c.sub(t).result(T)
        futures = []
        for i in range(30):
            futures.append(c.pub(t, b"m%d" % i))
            if i % 3 == 2:
                futures[-1].result(T)
        for f in futures:
            f.result(T)
        got = c.wait_for(lambda m: len(m) >= 30)
        assert got == [(t, b"m%d" % i) for i in range(30)]
        assert flaky.short > 0
        c.settled()
    finally:
        c.close()


# -- transports that never send directly ----------------------------------------------------
def test_tls_never_sends_directly(mosquitto_factory, pki, direct_stats: DirectStats) -> None:
    broker = mosquitto_factory(tls=True, pki=pki)
    opts = io.TlsContextOptions()
    opts.override_default_trust_store_from_path(None, pki.ca_cert)
    ctx = io.ClientTlsContext(opts)
    c311 = Client311(broker.tls_port, client=mqtt.Client(None, ctx), host="localhost")
    c5 = Client5(broker.tls_port, tls_ctx=ctx)
    try:
        for c in (c311, c5):
            assert c.driver.protocol.direct is None
            t = f"tls/{uid()}"
            c.sub(t).result(T)
            for i in range(5):
                c.pub(t, b"%d" % i).result(T)
            assert c.wait_for(lambda m: len(m) >= 5) == [(t, b"%d" % i) for i in range(5)]
        assert direct_stats.direct == 0
    finally:
        c311.close()
        c5.close()


def test_websocket_never_sends_directly(mosquitto, direct_stats: DirectStats) -> None:
    from helpers.ws_mqtt_relay import start_relay

    with start_relay("127.0.0.1", mosquitto.port) as relay:
        c311 = Client311(relay.port, use_websockets=True)
        c5 = Client5(relay.port, websocket_handshake_transform=lambda args: args.set_done())
        try:
            for c in (c311, c5):
                assert c.driver.protocol.direct is None
                t = f"ws/{uid()}"
                c.sub(t).result(T)
                for i in range(5):
                    c.pub(t, b"%d" % i).result(T)
                assert c.wait_for(lambda m: len(m) >= 5) == [(t, b"%d" % i) for i in range(5)]
            assert direct_stats.direct == 0
        finally:
            c311.close()
            c5.close()


# -- races with the loop ------------------------------------------------------------------
class _ReleaseHook:
    """Stands in for a driver's lock: runs ``hook`` once, right after ``thread`` next
    releases it (to let the loop run at exactly that point)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.hook: Callable[[], None] | None = None
        self.thread: threading.Thread | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self.real.acquire(blocking, timeout))

    def release(self) -> None:
        self.real.release()
        hook = self.hook
        if hook is not None and threading.current_thread() is self.thread:
            self.hook = None
            hook()

    def __enter__(self) -> None:
        self.real.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _publish0(topic: str, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    assert len(body) < 128
    return bytes((0x30, len(body))) + body


def test_311_direct_send_does_not_deliver_the_loops_events_again(direct_stats: DirectStats) -> None:
    """A message that the loop receives and delivers right after a direct send released
    the lock reaches the application once (the direct send must not hold on to the
    core's event list and deliver what the loop put there a second time)."""
    from helpers.mqtt311_fake_broker import FakeBroker, connack, read_packet

    server: list[Any] = []
    ready = threading.Event()

    def handler(sock: Any, _connect: bytes) -> None:
        sock.sendall(connack())
        server.append(sock)
        ready.set()
        while True:  # (never acknowledges anything)
            try:
                if read_packet(sock, timeout=T) is None:
                    return
            except OSError:
                return

    with FakeBroker(handler) as broker:
        c = Client311(broker.port)
        d = c.driver
        real = d.lock
        hooked = _ReleaseHook(real)
        hits = 0
        try:
            assert ready.wait(T)
            before = direct_stats.direct

            def arrives_meanwhile() -> None:
                nonlocal hits
                if direct_stats.direct > before:  # (this thread's publish was sent directly)
                    hits += 1
                server[0].sendall(_publish0("theirs", b"once"))
                c.wait_for(lambda m: ("theirs", b"once") in m)

            with real:  # the loop is done with the connection's start
                pass
            d.lock = hooked
            hooked.thread = threading.current_thread()
            hooked.hook = arrives_meanwhile
            c.pub("mine", b"x")  # never acknowledged
            hooked.hook = None
            d.lock = real
            assert hits == 1
            server[0].sendall(_publish0("theirs", b"end"))
            got = c.wait_for(lambda m: ("theirs", b"end") in m)
            assert got == [("theirs", b"once"), ("theirs", b"end")]
        finally:
            d.lock = real
            c.close()


def test_adapter_disconnect_is_not_overtaken_by_a_direct_send(mosquitto, direct_stats: DirectStats) -> None:
    """The 3.1.1 API on an MQTT 5 client: a publish submitted after disconnect() is not
    written (directly, by its thread) before the disconnect has been carried out; a
    QoS 0 publish then fails like any submitted while offline."""
    rec = Recorder()
    client = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", mosquitto.port, **rec.options()))
    ev = Events()
    conn = client.new_connection(**ev.callbacks())
    conn.connect().result(T)
    d: Any = client._driver
    assert d.protocol.direct is not None
    t = f"adapter/{uid()}"
    f0, _ = conn.publish(t, b"before", mqtt.QoS.AT_MOST_ONCE)
    f0.result(T)
    gate, blocked = threading.Event(), threading.Event()

    def block_loop() -> None:
        blocked.set()
        gate.wait(T)

    d.loop_thread.call_soon(block_loop)
    try:
        assert blocked.wait(T)
        disc = conn.disconnect()
        late, _ = conn.publish(t, b"late", mqtt.QoS.AT_MOST_ONCE)
    finally:
        gate.set()
    disc.result(T)
    with pytest.raises(Exception) as ei:
        late.result(T)
    assert getattr(ei.value, "name", "") == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    rec.wait("stopped")


def test_mqtt5_puback_without_publish_callback_is_sent_at_once() -> None:
    """An MQTT 5 client without on_publish callback acknowledges a QoS 1 message at
    once (the PUBACK made while the loop delivers the message's events must be
    written then, not left for the next read or timer: the keep-alive may be minutes)."""
    from helpers.mqtt311_fake_broker import FakeBroker, read_packet

    acks: list[bytes | None] = []
    done = threading.Event()

    def handler(sock: Any, _connect: bytes) -> None:
        try:
            sock.sendall(bytes((0x20, 3, 0, 0, 0)))  # CONNACK, no properties
            topic = b"t/ack"
            body = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + b"\x00" + b"qos1"
            sock.sendall(bytes((0x32, len(body))) + body)
            acks.append(read_packet(sock, timeout=T))
        except OSError:
            acks.append(None)
        done.set()
        while True:
            try:
                if read_packet(sock, timeout=T) is None:
                    return
            except OSError:
                return

    with FakeBroker(handler) as broker:
        rec = Recorder()
        opts = rec.options(connect_options=mqtt5.ConnectPacket(keep_alive_interval_sec=3600))
        opts.pop("on_publish_callback_fn")
        client = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", broker.port, **opts))
        client.start()
        try:
            rec.wait("success")
            assert done.wait(T)
            assert acks == [bytes((0x40, 2, 0, 7))]
        finally:
            client.stop()
            rec.wait("stopped")
