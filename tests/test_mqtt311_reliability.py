# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""QoS 1 reliability of crtpy.mqtt across broker restarts.

Two publishers send numbered QoS 1 messages to one subscriber (persistent sessions)
while the broker is stopped and restarted twice.  Every message must arrive at least
once, first arrivals in per-publisher order; interrupted/resumed fire for every client
and the subscription keeps working.  1,000 messages by default, 10,000 with
CRTPY_LONG_TESTS=1.

The broker is stopped with SIGTERM so that Mosquitto saves its persistent state (the
sessions and their queued messages): after SIGKILL a broker loses messages it has
already acknowledged, which no client can recover.  The ping-silence test stops the
broker with SIGSTOP instead.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events, new_topic

from crtpy import mqtt

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q1 = mqtt.QoS.AT_LEAST_ONCE
LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"


def test_qos1_messages_survive_two_broker_restarts(mosquitto_factory):
    total = 10_000 if LONG else 1_000
    publishers = 2
    per_pub = total // publishers
    broker = mosquitto_factory(extra={"persistence": "true", "max_queued_messages": 0,
                                      "max_inflight_messages": 100})
    base = new_topic("rel")
    cond = threading.Condition()
    arrivals: dict[int, list[int]] = {p: [] for p in range(publishers)}
    received = [0]
    distinct: set[tuple[int, int]] = set()

    def on_msg(topic, payload, **kw):
        p, seq = (int(x) for x in payload.split(b":"))
        with cond:
            arrivals[p].append(seq)
            distinct.add((p, seq))
            received[0] += 1
            cond.notify_all()

    sub_ev = Events()
    sub = mqtt.Connection(mqtt.Client(), broker.host, broker.port, "rel-sub", clean_session=False,
                          reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=1, **sub_ev.callbacks())
    resubscribed = []

    def sub_resumed(connection, return_code, session_present, **kw):
        sub_ev.add("resumed", return_code=return_code, session_present=session_present)
        if not session_present:  # the broker lost the session: subscribe again
            resubscribed.append(connection.resubscribe_existing_topics()[0].result(T))

    sub._on_connection_resumed_cb = sub_resumed
    sub.connect().result(T)
    sub.subscribe(f"{base}/#", Q1, on_msg)[0].result(T)

    pub_evs = [Events() for _ in range(publishers)]
    pubs = [mqtt.Connection(mqtt.Client(), broker.host, broker.port, f"rel-pub-{i}", clean_session=False,
                            reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=1, **pub_evs[i].callbacks())
            for i in range(publishers)]
    for p in pubs:
        p.connect().result(T)

    errors: list[BaseException] = []
    acked = [0]

    def publish_all(i: int) -> None:
        window = threading.BoundedSemaphore(200)

        def done(f):
            window.release()
            if f.exception() is not None:
                errors.append(f.exception())
            else:
                with cond:
                    acked[0] += 1
                    cond.notify_all()

        for seq in range(per_pub):
            window.acquire()
            fut, _ = pubs[i].publish(f"{base}/{i}", f"{i}:{seq}".encode(), Q1)
            fut.add_done_callback(done)

    threads = [threading.Thread(target=publish_all, args=(i,), daemon=True) for i in range(publishers)]
    for t in threads:
        t.start()

    def wait_received(n: int, timeout: float) -> None:
        with cond:
            assert cond.wait_for(lambda: received[0] >= n, timeout), \
                f"only {received[0]} of {n} messages arrived; errors: {errors[:3]}"

    for restart in (1, 2):
        wait_received(total * restart // 3, 60)
        broker.stop()  # SIGTERM: Mosquitto saves its sessions
        broker.start()
        sub_ev.wait("resumed", restart, timeout=30)
        for ev in pub_evs:
            ev.wait("resumed", restart, timeout=30)

    for t in threads:
        t.join(60)
    with cond:
        assert cond.wait_for(lambda: acked[0] == total and len(distinct) == total, 60), \
            f"acked {acked[0]}/{total}, distinct arrivals {[len(set(a)) for a in arrivals.values()]}, errors {errors[:3]}"
    assert not errors
    for p, seqs in arrivals.items():
        first: list[int] = []
        seen: set[int] = set()
        for s in seqs:
            if s not in seen:
                seen.add(s)
                first.append(s)
        assert first == list(range(per_pub)), f"publisher {p}: first arrivals out of order"
    assert len(sub_ev.of("interrupted")) == 2
    assert all(len(ev.of("interrupted")) == 2 for ev in pub_evs)
    # the subscription survived: a new message still arrives
    before = received[0]
    pubs[0].publish(f"{base}/0", b"0:0", Q1)[0].result(T)
    wait_received(before + 1, T)
    for c in [sub, *pubs]:
        c.disconnect().result(T)


def test_stopped_broker_detected_by_ping_timeout(mosquitto):
    """A broker that stops answering (SIGSTOP) is detected within keep-alive + ping timeout."""
    ev = Events()
    conn = mqtt.Connection(mqtt.Client(), mosquitto.host, mosquitto.port, new_topic("ping").replace("/", "-"),
                           keep_alive_secs=1, ping_timeout_ms=500, reconnect_min_timeout_secs=1,
                           reconnect_max_timeout_secs=1, **ev.callbacks())
    conn.connect().result(T)
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        err = ev.wait("interrupted", timeout=T)["error"]
        elapsed = time.monotonic() - start
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    assert err.name == "AWS_ERROR_MQTT_TIMEOUT"
    assert elapsed < 1.0 + 0.5 + 2.0  # keep-alive + ping timeout, with slack for a loaded machine
    ev.wait("resumed", timeout=T)
    conn.disconnect().result(T)
