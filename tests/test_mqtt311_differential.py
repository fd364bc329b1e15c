# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.mqtt side by side with the reference awscrt.mqtt: the same scripted servers and
the same broker must give the same error names, result dicts and callback sequences."""
from __future__ import annotations

import threading

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_fake_broker import FakeBroker, connack
from helpers.mqtt311_util import Events, new_topic

from crtpy import mqtt as crt_mqtt

ref_mqtt = pytest.importorskip("awscrt.mqtt")

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
IMPLS = [("crtpy", crt_mqtt), ("awscrt", ref_mqtt)]


def outcome(fut) -> tuple[str, str | None]:
    exc = fut.exception(T)
    if exc is None:
        return ("ok", repr(fut.result()))
    return (type(exc).__name__, getattr(exc, "name", None))


@pytest.mark.parametrize("answer", [
    connack(1), connack(2), connack(3), connack(4), connack(5),
    b"\x00\x00", b"\x20\xff\xff\xff\xff", b"\x90\x03\x00\x01\x00", b"",
], ids=["rc1", "rc2", "rc3", "rc4", "rc5", "type0", "remaining-length", "suback-first", "close"])
def test_connect_failures_match_reference(answer):
    results = {}
    for name, m in IMPLS:
        with FakeBroker(lambda s, first: s.sendall(answer) if answer else None) as broker:
            ev = Events()
            conn = m.Connection(m.Client(), "127.0.0.1", broker.port, f"diff-{name}", ping_timeout_ms=1000,
                                keep_alive_secs=5, **ev.callbacks())
            res = outcome(conn.connect())
            fail = ev.wait("failure")["data"].error
            results[name] = (res, type(fail).__name__, fail.name)
            del conn
    assert results["crtpy"] == results["awscrt"]


def test_operation_results_match_reference(mosquitto):
    results = {}
    for name, m in IMPLS:
        conn = m.Connection(m.Client(), mosquitto.host, mosquitto.port, f"diff-ops-{name}")
        out = [conn.connect().result(T)]
        topic = new_topic()
        got = threading.Event()
        msgs = []
        def on_msg(topic, payload, dup, qos, retain, msgs=msgs, got=got, **kw):
            msgs.append((payload, dup, int(qos), retain))
            got.set()

        f, pid = conn.subscribe(topic, m.QoS.AT_LEAST_ONCE, on_msg)
        r = f.result(T)
        out.append((r["packet_id"] == pid, r["topic"] == topic, int(r["qos"])))
        f, pid = conn.publish(topic, "text payload", m.QoS.AT_LEAST_ONCE)
        out.append(f.result(T) == {"packet_id": pid})
        assert got.wait(T)
        out.append(msgs)
        f, pid = conn.resubscribe_existing_topics()
        r = f.result(T)
        out.append((r["packet_id"] == pid, [(t == topic, int(q)) for t, q in r["topics"]]))
        f, pid = conn.unsubscribe(topic)
        out.append(f.result(T) == {"packet_id": pid})
        # (resubscribe_existing_topics() with no subscriptions left: the reference's future
        # never completes; crtpy completes it as documented, see test_resubscribe_nothing)
        for bad in ("a/#/b", ""):
            out.append(type(conn.subscribe(bad, m.QoS.AT_LEAST_ONCE)[0].exception(T)).__name__ != "NoneType")
        out.append(type(conn.publish("a/b", b"", m.QoS.EXACTLY_ONCE)[0].exception(T)).__name__)
        stats = conn.get_stats()
        out.append((stats.incomplete_operation_count, stats.unacked_operation_count))
        out.append(conn.disconnect().result(T))
        results[name] = out
        del conn
    assert results["crtpy"] == results["awscrt"]


def test_resubscribe_nothing(mosquitto):
    conn = crt_mqtt.Connection(crt_mqtt.Client(), mosquitto.host, mosquitto.port, "diff-resub")
    conn.connect().result(T)
    f, pid = conn.resubscribe_existing_topics()
    assert pid is None and f.result(T) == {"packet_id": None, "topics": []}
    conn.disconnect().result(T)
