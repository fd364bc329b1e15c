# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""QoS 1 reliability of the MQTT 3.1.1 adapter over the MQTT 5 client
(``mqtt5.Client.new_connection()``) across broker restarts.

The structure of tests/test_mqtt311_reliability.py: two publishers send numbered QoS 1
messages to one subscriber (persistent sessions: REJOIN_ALWAYS with a session expiry)
while the broker is stopped (SIGTERM, so Mosquitto saves its sessions) and restarted
twice.  Every message arrives at least once, first arrivals in per-publisher order;
interrupted/resumed fire for every adapter and the subscription keeps working.
1,000 messages by default, 10,000 with CRTPY_LONG_TESTS=1.
"""
from __future__ import annotations

import os
import threading

import pytest
from helpers.mosquitto import mosquitto_factory  # noqa: F401 - fixture
from helpers.mqtt311_util import Events, new_topic

from crtpy import mqtt, mqtt5

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q1 = mqtt.QoS.AT_LEAST_ONCE
LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"


def _adapter(broker, client_id: str, ev: Events):
    options = mqtt5.ClientOptions(
        broker.host, broker.port,
        connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=30,
                                            session_expiry_interval_sec=3600),
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
        offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT,
        min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000)
    client = mqtt5.Client(options)
    conn = client.new_connection(**ev.callbacks())
    assert conn.clean_session is False
    return client, conn


def test_qos1_messages_survive_two_broker_restarts(mosquitto_factory):
    total = 10_000 if LONG else 1_000
    publishers = 2
    per_pub = total // publishers
    broker = mosquitto_factory(extra={"persistence": "true", "max_queued_messages": 0,
                                      "max_inflight_messages": 100})
    base = new_topic("arel")
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
    _sub5, sub = _adapter(broker, "arel-sub", sub_ev)

    def sub_resumed(connection, return_code, session_present, **kw):
        sub_ev.add("resumed", return_code=return_code, session_present=session_present)
        if not session_present:  # the broker lost the session: subscribe again
            connection.resubscribe_existing_topics()

    sub._on_connection_resumed_cb = sub_resumed
    sub.connect().result(T)
    sub.subscribe(f"{base}/#", Q1, on_msg)[0].result(T)

    pub_evs = [Events() for _ in range(publishers)]
    made = [_adapter(broker, f"arel-pub-{i}", pub_evs[i]) for i in range(publishers)]
    pubs = [conn for _c5, conn in made]
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
    assert all(r["session_present"] for r in sub_ev.of("resumed")), "the persistent session was not resumed"
    # the subscription survived: a new message still arrives
    before = received[0]
    pubs[0].publish(f"{base}/0", b"0:0", Q1)[0].result(T)
    wait_received(before + 1, T)
    for c in [sub, *pubs]:
        c.disconnect().result(T)
