"""crtpy.mqtt5.Client against a scripted fake broker: protocol violations, malformed
input, timeouts, DISCONNECT with reason, retransmission with DUP."""
from __future__ import annotations

import asyncio
import time

import pytest
from helpers.fake_broker import FakeBroker, accept
from helpers.mosquitto import Recorder

from crtpy import mqtt5
from crtpy._mqtt import codec as c
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0


def run_client(broker: FakeBroker, rec: Recorder, connect=None, **kwargs) -> mqtt5.Client:
    opts = {"min_reconnect_delay_ms": 2000, "max_reconnect_delay_ms": 4000, **kwargs}
    client = mqtt5.Client(mqtt5.ClientOptions(broker.host, broker.port, connect_options=connect,
                                              **rec.options(**opts)))
    client.start()
    return client


def stop(client: mqtt5.Client, rec: Recorder) -> None:
    n = len(rec.of("stopped"))
    client.stop()
    rec.wait("stopped", n + 1)


def test_server_disconnect_with_reason_and_properties():
    async def handler(conn):
        await accept(conn)
        conn.send(c.Disconnect(0x8B, {c.P_REASON_STRING: "maintenance",
                                      c.P_USER_PROPERTY: [("who", "admin")],
                                      c.P_SERVER_REFERENCE: "other.example"}))
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        d = rec.wait("disconnection")
        assert d.exception.name == "AWS_ERROR_MQTT5_DISCONNECT_RECEIVED"
        p = d.disconnect_packet
        assert p.reason_code == mqtt5.DisconnectReasonCode.SERVER_SHUTTING_DOWN
        assert p.reason_string == "maintenance"
        assert p.server_reference == "other.example"
        assert [(u.name, u.value) for u in p.user_properties] == [("who", "admin")]
        stop(client, rec)
        assert not broker.errors


@pytest.mark.parametrize("code", [0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                                  0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F])
def test_connack_refusal_for_each_reason_code(code):
    async def handler(conn):
        await accept(conn, c.Connack(False, code, {c.P_REASON_STRING: "no"}))
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        f = rec.wait("failure")
        assert f.exception.name == "AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED"
        assert f.connack_packet.reason_code == mqtt5.ConnectReasonCode(code)
        assert f.connack_packet.reason_string == "no"
        stop(client, rec)


@pytest.mark.parametrize("garbage,name", [
    (b"\x30\xff\xff\xff\xff\x01", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),   # 5-byte length
    (b"\x00\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),                   # packet type 0
    (b"\x30\x05\x00\x01t\x02\x7f\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),  # unknown property
    (b"\x30\x04\x00\x01\xff\x00", "AWS_ERROR_MQTT5_INVALID_UTF8_STRING"),
    (b"\x10\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),                   # CONNECT from server
    (b"\x50\x02\x00\x01", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),           # PUBREC: no QoS 2
])
def test_malformed_and_unexpected_packets_close_connection(garbage, name):
    async def handler(conn):
        await accept(conn)
        conn.send(garbage)
        rest = await conn.read_until_closed()
        conn.broker.log.append(rest)

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        d = rec.wait("disconnection")
        assert d.exception.name == name
        broker.log.wait(1)  # the broker saw the connection close
        stop(client, rec)
    assert broker.log, "the client must close the socket"
    sent = broker.log[0]
    assert sent and isinstance(sent[-1], c.Disconnect) and sent[-1].reason_code >= 0x80


def test_unknown_property_in_connack_fails_connection():
    async def handler(conn):
        await conn.read()
        conn.send(b"\x20\x05\x00\x00\x02\x7f\x00")
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        f = rec.wait("failure")
        assert f.exception.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
        assert f.connack_packet is None
        stop(client, rec)


def test_packet_before_connack_fails_connection():
    async def handler(conn):
        await conn.read()
        conn.send(c.Publish("early", b"x"))
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        f = rec.wait("failure")
        assert f.exception.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
        assert not rec.of("success")
        stop(client, rec)


def _alias_options(size=5):
    return mqtt5.TopicAliasingOptions(inbound_behavior=mqtt5.InboundTopicAliasBehaviorType.ENABLED,
                                      inbound_cache_max_size=size)


def test_inbound_topic_alias_resolved_and_undefined_alias_rejected():
    async def handler(conn):
        connect = await accept(conn)
        conn.broker.log.append(connect.props.get(c.P_TOPIC_ALIAS_MAXIMUM))
        conn.send(c.Publish("real/topic", b"1", props={c.P_TOPIC_ALIAS: 2}))
        conn.send(c.Publish("", b"2", props={c.P_TOPIC_ALIAS: 2}))
        conn.send(c.Publish("", b"3", props={c.P_TOPIC_ALIAS: 3}))  # never defined
        conn.broker.log.append(await conn.read_until_closed())

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, topic_aliasing_options=_alias_options())
        assert rec.wait("success").negotiated_settings.topic_alias_maximum_to_client == 5
        msgs = rec.wait_messages(2)
        assert [(m.topic, m.payload) for m in msgs] == [("real/topic", b"1"), ("real/topic", b"2")]
        d = rec.wait("disconnection")
        assert d.exception.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"  # as the reference
        broker.log.wait(2)
        stop(client, rec)
    assert broker.log[0] == 5
    assert broker.log[1][-1].reason_code == mqtt5.DisconnectReasonCode.PROTOCOL_ERROR


def test_inbound_topic_alias_when_disabled_is_rejected():
    async def handler(conn):
        await accept(conn)
        conn.send(c.Publish("t", b"x", props={c.P_TOPIC_ALIAS: 1}))
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        assert rec.wait("disconnection").exception.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
        assert not rec.messages
        stop(client, rec)


def test_oversize_inbound_publish_rejected():
    async def handler(conn):
        connect = await accept(conn)
        conn.broker.log.append(connect.props.get(c.P_MAXIMUM_PACKET_SIZE))
        conn.send(c.Publish("big", b"x" * 5000))
        conn.broker.log.append(await conn.read_until_closed())

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, connect=mqtt5.ConnectPacket(maximum_packet_size=1000))
        d = rec.wait("disconnection")
        assert d.exception.name == "AWS_ERROR_MQTT_BUFFER_TOO_BIG"
        assert not rec.messages
        broker.log.wait(2)
        stop(client, rec)
    assert broker.log[0] == 1000
    assert broker.log[1][-1].reason_code == mqtt5.DisconnectReasonCode.PACKET_TOO_LARGE


def test_connack_timeout():
    async def handler(conn):
        await conn.read()
        await conn.read_until_closed()  # never answers

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, connack_timeout_ms=300)
        f = rec.wait("failure")
        assert f.exception.name == "AWS_ERROR_MQTT5_CONNACK_TIMEOUT"
        stop(client, rec)


def test_ping_timeout_detected():
    async def handler(conn):
        await accept(conn)
        while True:
            p = await conn.read()
            if p is None:
                return
            conn.broker.log.append(p)  # PINGREQs are never answered

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, connect=mqtt5.ConnectPacket(keep_alive_interval_sec=1),
                            ping_timeout_ms=300)
        d = rec.wait("disconnection", timeout=5)
        assert d.exception.name == "AWS_ERROR_MQTT5_PING_RESPONSE_TIMEOUT"
        assert any(isinstance(p, c.Pingreq) for p in broker.log)
        stop(client, rec)


def test_pings_answered_keep_connection():
    async def handler(conn):
        await accept(conn)
        while True:
            p = await conn.read()
            if p is None:
                return
            if isinstance(p, c.Pingreq):
                conn.broker.log.append("ping")
                conn.send(c.Pingresp())

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, connect=mqtt5.ConnectPacket(keep_alive_interval_sec=1),
                            ping_timeout_ms=500)
        rec.wait("success")
        # wait for two answered pings, then make sure no disconnection happened
        fut = client.publish(mqtt5.PublishPacket(payload=b"x", topic="t"))
        fut.result(T)
        end = time.monotonic() + 5
        while broker.log.count("ping") < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert broker.log.count("ping") >= 2
        assert not rec.of("disconnection")
        stop(client, rec)


def test_unacked_qos1_resent_with_dup_after_session_resumption():
    async def handler(conn):
        connect = await conn.read()
        first = conn.index == 1
        conn.send(c.Connack(session_present=not first))
        p = await conn.read()
        conn.broker.log.append((connect.clean_start, p))
        if first:
            conn.close()  # drop it without acknowledging
            return
        conn.send(c.Ack(c.PUBACK, p.packet_id, 0, {c.P_REASON_STRING: "ok"}))
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, connect=mqtt5.ConnectPacket(session_expiry_interval_sec=100),
                            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS,
                            min_reconnect_delay_ms=50, max_reconnect_delay_ms=100)
        rec.wait("success")
        fut = client.publish(mqtt5.PublishPacket(payload=b"keep", topic="t/q1", qos=1))
        res = fut.result(T)
        assert res.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
        assert res.puback.reason_string == "ok"
        assert rec.wait("success", 2).negotiated_settings.rejoined_session is True
        broker.log.wait(2)
        stop(client, rec)
    (clean1, p1), (clean2, p2) = broker.log[:2]
    assert clean1 is True and clean2 is False
    assert p1.packet_id == p2.packet_id and p1.dup is False and p2.dup is True
    assert p2.payload == b"keep"


def test_ack_timeout_fails_operation():
    async def handler(conn):
        await accept(conn)
        await conn.read_until_closed()  # never acknowledges

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec, ack_timeout_sec=1)
        rec.wait("success")
        with pytest.raises(AwsCrtError) as ei:
            client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a")])).result(T)
        assert ei.value.name == "AWS_ERROR_MQTT_TIMEOUT"
        stop(client, rec)


def test_receive_maximum_from_connack_respected():
    async def handler(conn):
        await accept(conn, c.Connack(False, 0, {c.P_RECEIVE_MAXIMUM: 2}))
        held = []
        while True:
            p = await conn.read(timeout=2)
            if p is None:
                return
            if isinstance(p, c.Publish):
                held.append(p)
                conn.broker.log.append(len(held))
                if len(held) == 2:
                    # no third publish may arrive before we acknowledge
                    try:
                        extra = await conn.read(timeout=0.3)
                    except asyncio.TimeoutError:
                        extra = None
                    conn.broker.log.append(("extra", extra))
                    for h in held:
                        conn.send(c.Ack(c.PUBACK, h.packet_id))
                    held.clear()
                    if extra is not None:
                        held.append(extra)

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        rec.wait("success")
        futs = [client.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic="t", qos=1)) for i in range(4)]
        for f in futs:
            f.result(T)
        broker.log.wait(3)
        stop(client, rec)
    assert ("extra", None) in broker.log
    assert max(x for x in broker.log if isinstance(x, int)) == 2


@pytest.mark.parametrize("username,disable", [(None, False), ("bob", False), ("bob", True), (None, True)])
def test_metrics_in_username_like_reference(username, disable):
    ref = pytest.importorskip("awscrt.mqtt5")

    async def handler(conn):
        p = await accept(conn)
        conn.broker.log.append(p.username)
        await conn.read_until_closed()

    seen = []
    for m in (mqtt5, ref):
        with FakeBroker(handler) as broker:
            rec = Recorder()
            client = m.Client(m.ClientOptions(broker.host, broker.port, disable_metrics=disable,
                                              connect_options=m.ConnectPacket(username=username),
                                              **rec.options()))
            client.start()
            rec.wait("success")
            seen.append(broker.log.wait(1)[0])
            stop(client, rec)
    assert seen[0] == seen[1]
    if disable:
        assert seen[0] == username
    else:
        assert "SDK=" in seen[0] and seen[0].startswith(username or "?")


def test_automatic_puback_sent_without_other_activity():
    """The PUBACK after a QoS 1 callback is sent even when the client has nothing else to
    write and nothing more arrives (it is flushed without a wake-up of its own), once per
    message and in the order the messages arrived."""
    async def handler(conn):
        await accept(conn)
        await conn.read()  # SUBSCRIBE is not needed: the fake broker just sends
        conn.send(c.encode(c.Publish("t/a", b"1", 1, False, False, 7), 5)
                  + c.encode(c.Publish("t/a", b"2", 1, False, False, 9), 5))
        acks = [await conn.read(), await conn.read()]
        conn.broker.log.append(acks)
        await conn.read_until_closed()

    with FakeBroker(handler) as broker:
        rec = Recorder()
        client = run_client(broker, rec)
        rec.wait("success")
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("t/#", mqtt5.QoS.AT_LEAST_ONCE)]))
        broker.log.wait(1)
        stop(client, rec)
    acks = broker.log[0]
    assert [(a.type, a.packet_id) for a in acks] == [(c.PUBACK, 7), (c.PUBACK, 9)]
    assert [p.payload for p in rec.messages] == [b"1", b"2"]
