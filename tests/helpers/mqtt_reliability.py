"""The broker-restart reliability scenario shared by the crtpy.mqtt (3.1.1) tests and the
3.1.1-over-MQTT 5 adapter tests.

Several publishers send numbered QoS 1 messages to one subscriber (persistent sessions)
while the broker is stopped with SIGTERM (Mosquitto then saves its sessions) and
restarted twice.  Every message must arrive at least once, first arrivals in
per-publisher order; interrupted/resumed fire for every connection and the subscription
keeps working afterwards.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from helpers.mqtt311_util import Events, new_topic

__all__ = ["qos1_survives_broker_restarts"]

T = 10.0


def qos1_survives_broker_restarts(broker: Any, mqtt: Any, connect: Callable[[str, Events], Any], prefix: str, *,
                                  total: int, publishers: int = 2, wait_resubscribe: bool = False,
                                  expect_session_present: bool = False) -> None:
    """``connect(client_id, events)`` makes one (not yet connected) 3.1.1-style
    connection whose lifecycle callbacks feed ``events``.  ``wait_resubscribe`` waits,
    inside the resumed callback, for the re-subscription when the broker lost the
    session; ``expect_session_present`` requires every resumption to find the session."""
    Q1 = mqtt.QoS.AT_LEAST_ONCE
    per_pub = total // publishers
    base = new_topic(prefix)
    cond = threading.Condition()
    arrivals: dict[int, list[int]] = {p: [] for p in range(publishers)}
    received = [0]
    distinct: set[tuple[int, int]] = set()

    def on_msg(topic: str, payload: bytes, **kw: Any) -> None:
        p, seq = (int(x) for x in payload.split(b":"))
        with cond:
            arrivals[p].append(seq)
            distinct.add((p, seq))
            received[0] += 1
            cond.notify_all()

    sub_ev = Events()
    sub = connect(f"{prefix}-sub", sub_ev)

    def sub_resumed(connection: Any, return_code: Any, session_present: bool, **kw: Any) -> None:
        sub_ev.add("resumed", return_code=return_code, session_present=session_present)
        if not session_present:  # the broker lost the session: subscribe again
            fut = connection.resubscribe_existing_topics()[0]
            if wait_resubscribe:
                fut.result(T)

    sub._on_connection_resumed_cb = sub_resumed
    sub.connect().result(T)
    sub.subscribe(f"{base}/#", Q1, on_msg)[0].result(T)

    pub_evs = [Events() for _ in range(publishers)]
    pubs = [connect(f"{prefix}-pub-{i}", pub_evs[i]) for i in range(publishers)]
    for p in pubs:
        p.connect().result(T)

    errors: list[BaseException] = []
    acked = [0]

    def publish_all(i: int) -> None:
        window = threading.BoundedSemaphore(200)

        def done(f: Any) -> None:
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
    if expect_session_present:
        assert all(r["session_present"] for r in sub_ev.of("resumed")), "the persistent session was not resumed"
    # the subscription survived: a new message still arrives
    before = received[0]
    pubs[0].publish(f"{base}/0", b"0:0", Q1)[0].result(T)
    wait_received(before + 1, T)
    for c in [sub, *pubs]:
        c.disconnect().result(T)
