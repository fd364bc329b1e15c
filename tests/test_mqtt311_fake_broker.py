"""crtpy.mqtt against a scripted fake broker: CONNACK refusals, malformed and unexpected
packets, silent servers (ping timeout), unacknowledged publishes (DUP resend, operation
timeout), metrics in the username.  The client must report the reference's error names,
close the socket, and never hang."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from helpers.mqtt311_fake_broker import FakeBroker, connack, read_packet
from helpers.mqtt311_util import Events

from crtpy import mqtt
from crtpy._mqtt import codec as c

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q1 = mqtt.QoS.AT_LEAST_ONCE


def make(port: int, ev: Events | None = None, **kw) -> mqtt.Connection:
    kw.setdefault("reconnect_min_timeout_secs", 1)
    kw.setdefault("reconnect_max_timeout_secs", 1)
    cbs = ev.callbacks() if ev is not None else {}
    cbs.update(kw)
    return mqtt.Connection(mqtt.Client(), "127.0.0.1", port, "fake-client", **cbs)


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_connack_refusal(code):
    with FakeBroker(lambda s, first: s.sendall(connack(code))) as broker:
        ev = Events()
        conn = make(broker.port, ev)
        exc = conn.connect().exception(T)
        # As the reference: a refused CONNACK is a protocol error; the code is in the message.
        assert exc.name == "AWS_ERROR_MQTT_PROTOCOL_ERROR"
        assert f"return code {code}" in str(exc)
        assert ev.wait("failure")["data"].error.name == "AWS_ERROR_MQTT_PROTOCOL_ERROR"
        assert broker.eof.wait(T)  # the client closed the socket
        assert broker.connections == 1  # no retry after a failed first connect


@pytest.mark.parametrize("answer, name", [
    (b"\x00\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # packet type 0 instead of CONNACK
    (b"\x90\x03\x00\x01\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # SUBACK before CONNACK
    (b"\x20\xff\xff\xff\xff", "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"),  # oversized remaining length
    (b"\x20\x03\x00\x00\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # CONNACK too long
    (b"\x21\x02\x00\x00", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS"),  # bad fixed-header flags
])
def test_bad_packet_instead_of_connack(answer, name):
    with FakeBroker(lambda s, first: s.sendall(answer)) as broker:
        conn = make(broker.port)
        exc = conn.connect().exception(T)
        assert exc.name == name
        assert broker.eof.wait(T)


def test_server_closes_before_connack():
    def handler(s, first):
        s.shutdown(socket.SHUT_RDWR)

    with FakeBroker(handler) as broker:
        assert make(broker.port).connect().exception(T).name == "AWS_IO_SOCKET_CLOSED"


def test_silent_server_times_out_waiting_for_connack():
    with FakeBroker(lambda s, first: None) as broker:
        conn = make(broker.port, ping_timeout_ms=500, keep_alive_secs=5)
        start = time.monotonic()
        assert conn.connect().exception(T).name == "AWS_ERROR_MQTT_TIMEOUT"
        assert time.monotonic() - start < T


@pytest.mark.parametrize("bad, name", [
    (b"\xd0\x01\x00", "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"),  # PINGRESP with a body
    (b"\x20\x02\x00\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # a second CONNACK
    (b"\x82\x06\x00\x01\x00\x01a\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # SUBSCRIBE from the server
    (b"\x80\x06\x00\x01\x00\x01a\x00", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS"),  # ... with bad flags
    (b"\x36\x05\x00\x01a\x00\x01", "AWS_ERROR_MQTT_INVALID_QOS"),  # PUBLISH with QoS 3
    (b"\x30\xff\xff\xff\xff\x7f", "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"),
])
def test_bad_packet_after_connack_interrupts_and_reconnects(bad, name):
    def handler(s, first):
        s.sendall(connack(0))
        if broker.connections == 1:
            s.sendall(bad)

    with FakeBroker(handler) as broker:
        ev = Events()
        conn = make(broker.port, ev)
        assert conn.connect().result(T) == {"session_present": False}
        assert ev.wait("interrupted")["error"].name == name
        ev.wait("resumed")
        assert broker.connections == 2
        conn.disconnect().result(T)
        ev.wait("closed")


def test_ping_timeout_detected_within_keep_alive_plus_ping_timeout():
    pings = []

    def handler(s, first):
        s.sendall(connack(0))
        while True:  # read, never answer PINGREQ
            p = read_packet(s, timeout=T)
            if p is None:
                return
            pings.append(p)

    with FakeBroker(handler) as broker:
        ev = Events()
        conn = make(broker.port, ev, keep_alive_secs=1, ping_timeout_ms=500, reconnect_min_timeout_secs=5,
                    reconnect_max_timeout_secs=5)
        conn.connect().result(T)
        start = time.monotonic()
        err = ev.wait("interrupted", timeout=T)["error"]
        elapsed = time.monotonic() - start
        assert err.name == "AWS_ERROR_MQTT_TIMEOUT"
        assert pings and pings[0] == c.PINGREQ_BYTES
        assert elapsed < 1.0 + 0.5 + 2.0  # keep-alive + ping timeout, with slack for a loaded machine
        conn.disconnect().result(T)


def test_unacked_publish_resent_with_dup_after_reconnect():
    seen: list[bytes] = []
    lock = threading.Lock()

    def handler(s, first):
        with lock:
            n = broker.connections
        s.sendall(connack(0, session_present=n > 1))
        p = read_packet(s, timeout=T)
        seen.append(p)
        if n == 1:
            s.close()  # drop without PUBACK
            return
        s.sendall(b"\x40\x02" + p[-5 - 2:-5])  # PUBACK with the packet id (payload is 5 bytes)

    with FakeBroker(handler) as broker:
        ev = Events()
        conn = make(broker.port, ev, clean_session=False)
        conn.connect().result(T)
        fut, pid = conn.publish("a/b", b"hello", Q1)
        assert fut.result(3 * T) == {"packet_id": pid}
        first, second = (c.decode_one(p, 4) for p in seen)
        assert first.dup is False and second.dup is True
        assert first.packet_id == second.packet_id == pid and second.payload == b"hello"
        assert ev.wait("resumed")["session_present"] is True
        conn.disconnect().result(T)


def test_protocol_operation_timeout():
    def handler(s, first):
        s.sendall(connack(0))
        while read_packet(s, timeout=T) is not None:
            pass  # never acknowledge

    with FakeBroker(handler) as broker:
        conn = make(broker.port, protocol_operation_timeout_ms=300)
        conn.connect().result(T)
        assert conn.publish("a/b", b"x", Q1)[0].exception(T).name == "AWS_ERROR_MQTT_TIMEOUT"
        assert conn.subscribe("a/#", Q1)[0].exception(T).name == "AWS_ERROR_MQTT_TIMEOUT"
        assert conn.get_stats().incomplete_operation_count == 0
        conn.disconnect().result(T)


def test_suback_failure_is_subscribe_error_and_qos2_inbound():
    qos2_sent = []
    pubcomp_seen = threading.Event()

    def handler(s, first):
        s.sendall(connack(0))
        while True:
            p = read_packet(s, timeout=T)
            if p is None:
                return
            if p[0] >> 4 == c.SUBSCRIBE:
                pid = p[2:4]
                topic = c.decode_one(p, 4).subscriptions[0].topic_filter
                s.sendall(b"\x90\x03" + pid + (b"\x80" if topic == "denied" else b"\x02"))
                if topic != "denied" and not qos2_sent:
                    qos2_sent.append(1)
                    # a QoS 2 delivery: PUBLISH, then PUBREL after our PUBREC
                    s.sendall(c.encode_publish(c.Publish("ok/1", b"q2", 2, False, False, 7), 4))
                    assert read_packet(s)[:2] == b"\x50\x02"
                    s.sendall(b"\x62\x02\x00\x07")
                    assert read_packet(s) == b"\x70\x02\x00\x07"
                    pubcomp_seen.set()

    with FakeBroker(handler) as broker:
        conn = make(broker.port)
        conn.connect().result(T)
        exc = conn.subscribe("denied", Q1)[0].exception(T)
        assert isinstance(exc, mqtt.SubscribeError)
        got = threading.Event()
        msgs = []
        fut, pid = conn.subscribe("ok/#", mqtt.QoS.EXACTLY_ONCE,
                                  lambda topic, payload, qos, **kw: (msgs.append((payload, qos)), got.set()))
        assert fut.result(T) == {"packet_id": pid, "topic": "ok/#", "qos": mqtt.QoS.EXACTLY_ONCE}
        assert got.wait(T) and msgs == [(b"q2", mqtt.QoS.EXACTLY_ONCE)]
        # the message is delivered at PUBLISH: let the QoS 2 exchange finish before the
        # next SUBSCRIBE, or the broker stand-in would read it where it expects PUBCOMP
        assert pubcomp_seen.wait(T)
        assert conn.resubscribe_existing_topics()[0].result(T)["topics"] == [("ok/#", mqtt.QoS.EXACTLY_ONCE)]
        conn.disconnect().result(T)
        assert not broker.errors


def test_metrics_appended_to_username_unless_disabled():
    connects = []

    def handler(s, first):
        connects.append(c.decode_one(first, 4))
        s.sendall(connack(0))

    with FakeBroker(handler) as broker:
        for disable in (False, True):
            conn = mqtt.Connection(mqtt.Client(), "127.0.0.1", broker.port, "m", username="user",
                                   password="pw", disable_metrics=disable)
            conn.connect().result(T)
            conn.disconnect().result(T)
    with_metrics, without = connects
    assert with_metrics.username.startswith("user?SDK=") and "Platform=" in with_metrics.username
    assert without.username == "user" and without.password == b"pw"
    assert with_metrics.keep_alive == 1200 and with_metrics.clean_start is True
    assert "pw" not in repr(with_metrics)
