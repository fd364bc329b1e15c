"""Differential tests: the same scenario with crtpy.mqtt5 and the reference
awscrt.mqtt5 against one Mosquitto; the results must be equal field by field."""
from __future__ import annotations

import dataclasses
import enum
import threading
import uuid

import pytest
from helpers.mosquitto import mosquitto_factory  # noqa: F401 - fixture

from crtpy import mqtt5 as crt_mqtt5

ref_mqtt5 = pytest.importorskip("awscrt.mqtt5")

T = 10.0


def plain(obj):
    """Dataclasses/enums/lists -> plain Python values, comparable across the two modules."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return (type(obj).__name__, obj.value)
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, Exception):
        return getattr(obj, "name", type(obj).__name__)
    return obj


def scenario(m, broker, tag: str) -> dict:
    events: dict[str, list] = {"success": [], "failure": [], "publish": [], "stopped": []}
    cond = threading.Condition()

    def add(kind):
        def f(data):
            with cond:
                events[kind].append(data)
                cond.notify_all()
        return f

    def wait(kind, n=1):
        with cond:
            assert cond.wait_for(lambda: len(events[kind]) >= n, T), (tag, kind)

    out: dict = {}
    client = m.Client(m.ClientOptions(
        broker.host, broker.port,
        connect_options=m.ConnectPacket(client_id=f"diff-{tag}", keep_alive_interval_sec=45,
                                        session_expiry_interval_sec=30, receive_maximum=50),
        on_publish_callback_fn=add("publish"),
        on_lifecycle_event_connection_success_fn=add("success"),
        on_lifecycle_event_connection_failure_fn=add("failure"),
        on_lifecycle_event_stopped_fn=add("stopped")))
    client.start()
    wait("success")
    s = events["success"][0]
    out["connack"] = plain(s.connack_packet)
    neg = plain(s.negotiated_settings)
    neg.pop("client_id")
    out["negotiated"] = neg
    t = f"diff/{uuid.uuid4().hex}"
    out["suback"] = plain(client.subscribe(m.SubscribePacket(
        [m.Subscription(t, m.QoS.AT_LEAST_ONCE), m.Subscription(t + "/#", m.QoS.AT_MOST_ONCE)],
        subscription_identifier=7, user_properties=[m.UserProperty("s", "1")])).result(T))
    out["puback"] = plain(client.publish(m.PublishPacket(
        payload=b"payload", qos=m.QoS.AT_LEAST_ONCE, topic=t,
        payload_format_indicator=m.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
        message_expiry_interval_sec=600, response_topic="resp/t", correlation_data_bytes=b"corr",
        content_type="text/plain", user_properties=[m.UserProperty("a", "b")])).result(T))
    out["puback0"] = plain(client.publish(m.PublishPacket(payload="text", topic=t + "/x")).result(T))
    out["nosub"] = plain(client.publish(m.PublishPacket(payload=b"z", qos=1, topic=t + "-none")).result(T))
    # a last message on the same connection: once it is in, everything before it is too
    client.publish(m.PublishPacket(payload=b"end", qos=m.QoS.AT_LEAST_ONCE, topic=t + "/zz")).result(T)
    with cond:
        assert cond.wait_for(lambda: any(d.publish_packet.topic == t + "/zz" for d in events["publish"]), T)
    msgs = [plain(d.publish_packet) for d in events["publish"] if d.publish_packet.topic != t + "/zz"]
    for msg in msgs:
        msg["topic"] = msg["topic"].replace(t, "T")
        if msg.get("message_expiry_interval_sec"):
            msg["message_expiry_interval_sec"] = "set"
    out["received"] = sorted(msgs, key=lambda x: x["topic"])
    out["unsuback"] = plain(client.unsubscribe(m.UnsubscribePacket([t, "not/there"])).result(T))
    stats = client.get_stats()
    out["stats"] = plain(stats)
    client.stop()
    wait("stopped")
    return out


def test_same_results_as_reference(mosquitto_factory):  # noqa: F811
    broker = mosquitto_factory()
    ours = scenario(crt_mqtt5, broker, "crtpy")
    ref = scenario(ref_mqtt5, broker, "ref")
    for key in ref:
        assert ours[key] == ref[key], key


def test_refusal_same_as_reference(mosquitto_factory):  # noqa: F811
    broker = mosquitto_factory(users={"u": "right"})
    results = []
    for m in (crt_mqtt5, ref_mqtt5):
        got = []
        done = threading.Event()
        stopped = threading.Event()

        def failure(d, got=got, done=done):
            got.append(d)
            done.set()

        client = m.Client(m.ClientOptions(
            broker.host, broker.auth_port,
            connect_options=m.ConnectPacket(username="u", password="wrong"),
            min_reconnect_delay_ms=5000,
            on_lifecycle_event_connection_failure_fn=failure,
            on_lifecycle_event_stopped_fn=lambda d, s=stopped: s.set()))
        client.start()
        assert done.wait(T)
        client.stop()
        assert stopped.wait(T)
        results.append(plain(got[0]))
    assert results[0] == results[1]


def _connect_cases():
    def full(m):
        will = m.PublishPacket(
            payload=b"w", qos=1, retain=True, topic="will/t",
            payload_format_indicator=m.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
            message_expiry_interval_sec=8, response_topic="rt", correlation_data_bytes=b"cd",
            content_type="ct", user_properties=[m.UserProperty("a", "b")])
        return {
            "connect_options": m.ConnectPacket(
                keep_alive_interval_sec=33, client_id="cid", username="u", password="pw",
                session_expiry_interval_sec=99, request_response_information=True,
                request_problem_information=False, receive_maximum=7, maximum_packet_size=5000,
                will_delay_interval_sec=4, will=will, user_properties=[m.UserProperty("x", "y")]),
            "topic_aliasing_options": m.TopicAliasingOptions(
                inbound_behavior=m.InboundTopicAliasBehaviorType.ENABLED, inbound_cache_max_size=9),
            "disable_metrics": True}

    return {
        "default": lambda m: {},
        "full": full,
        "inbound_alias_default": lambda m: {"topic_aliasing_options": m.TopicAliasingOptions(
            inbound_behavior=m.InboundTopicAliasBehaviorType.ENABLED)},
        "rejoin_always": lambda m: {"session_behavior": m.ClientSessionBehaviorType.REJOIN_ALWAYS},
    }


@pytest.mark.parametrize("case", sorted(_connect_cases()))
def test_connect_packet_same_as_reference(case):
    """The CONNECT on the wire (decoded by our codec) is identical for both clients."""
    from helpers.fake_broker import FakeBroker, accept

    kw = _connect_cases()[case]

    async def handler(conn):
        conn.broker.log.append(await accept(conn))
        await conn.read_until_closed()

    packets = []
    for m in (crt_mqtt5, ref_mqtt5):
        stopped = threading.Event()
        connected = threading.Event()
        with FakeBroker(handler) as broker:
            client = m.Client(m.ClientOptions(
                broker.host, broker.port, **kw(m),
                on_lifecycle_event_connection_success_fn=lambda d, e=connected: e.set(),
                on_lifecycle_event_stopped_fn=lambda d, s=stopped: s.set()))
            client.start()
            assert connected.wait(T)
            packets.append(broker.log.wait(1)[0])
            client.stop()
            assert stopped.wait(T)
    assert packets[0] == packets[1]


@pytest.mark.parametrize("session_expiry", [None, 5])
def test_operation_packets_same_as_reference(session_expiry):
    """SUBSCRIBE, PUBLISH (with every property), UNSUBSCRIBE and the stop DISCONNECT on
    the wire are identical for both clients."""
    from helpers.fake_broker import FakeBroker, accept

    from crtpy._mqtt import codec as c

    async def handler(conn):
        await accept(conn)
        while True:
            p = await conn.read()
            if p is None:
                conn.broker.log.append("closed")
                return
            conn.broker.log.append(p)
            if isinstance(p, c.Subscribe):
                conn.send(c.Suback(p.packet_id, [s.qos for s in p.subscriptions]))
            elif isinstance(p, c.Unsubscribe):
                conn.send(c.Unsuback(p.packet_id, [0] * len(p.topic_filters)))
            elif isinstance(p, c.Publish) and p.qos:
                conn.send(c.Ack(c.PUBACK, p.packet_id))

    logs = []
    for m in (crt_mqtt5, ref_mqtt5):
        stopped = threading.Event()
        connected = threading.Event()
        with FakeBroker(handler) as broker:
            client = m.Client(m.ClientOptions(
                broker.host, broker.port,
                on_lifecycle_event_connection_success_fn=lambda d, e=connected: e.set(),
                on_lifecycle_event_stopped_fn=lambda d, s=stopped: s.set()))
            client.start()
            assert connected.wait(T)
            client.subscribe(m.SubscribePacket(
                [m.Subscription("a/+", m.QoS.AT_LEAST_ONCE, no_local=True, retain_as_published=True,
                                retain_handling_type=m.RetainHandlingType.DONT_SEND),
                 m.Subscription("b/#")],
                subscription_identifier=12, user_properties=[m.UserProperty("s", "t")])).result(T)
            client.publish(m.PublishPacket(
                payload="héllo", qos=m.QoS.AT_LEAST_ONCE, retain=True, topic="a/b",
                payload_format_indicator=m.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
                message_expiry_interval_sec=77, response_topic="r/t", correlation_data=b"old",
                correlation_data_bytes=b"new", content_type="text/plain",
                user_properties=[m.UserProperty("k", "v"), m.UserProperty("k", "w")])).result(T)
            client.publish(m.PublishPacket(payload=b"", topic="q0")).result(T)
            client.unsubscribe(m.UnsubscribePacket(["a/+", "b/#"])).result(T)
            client.stop(m.DisconnectPacket(
                reason_code=m.DisconnectReasonCode.DISCONNECT_WITH_WILL_MESSAGE,
                session_expiry_interval_sec=session_expiry, reason_string="bye",
                user_properties=[m.UserProperty("d", "e")]))
            assert stopped.wait(T)
            with broker.log.cond:
                assert broker.log.cond.wait_for(lambda b=broker: "closed" in b.log, T)
            logs.append(list(broker.log))
    assert logs[0] == logs[1]
    # a DISCONNECT raising the session expiry from 0 is a protocol error: not sent
    assert isinstance(logs[0][-2], c.Disconnect) == (session_expiry is None)


_GARBAGE = {
    "five_byte_length": b"\x30\xff\xff\xff\xff\x01",
    "packet_type_0": b"\x00\x00",
    "unknown_property": b"\x30\x05\x00\x01t\x02\x7f\x00",
    "connect_from_server": b"\x10\x00",
    "pubrec": b"\x50\x02\x00\x01",
    "auth": b"\xf0\x00",
    "undefined_topic_alias": b"\x30\x06\x00\x00\x03\x23\x00\x03x",
    "puback_unknown_id": b"\x40\x02\x00\x4d",
    "suback_unknown_id": b"\x90\x04\x00\x09\x00\x00",
    "unsolicited_pingresp": b"\xd0\x00",
    "server_disconnect": b"\xe0\x01\x8b",
}


@pytest.mark.parametrize("case", sorted(_GARBAGE))
def test_reaction_to_bad_server_input_same_as_reference(case):
    """Error name of the lifecycle event and the DISCONNECT sent back (if any) match the
    reference, for malformed packets and protocol violations after CONNACK."""
    from helpers.fake_broker import FakeBroker, accept
    from helpers.mosquitto import Recorder

    from crtpy._mqtt import codec as c

    async def handler(conn):
        sent = []
        try:
            await accept(conn)
            conn.send(_GARBAGE[case])
            conn.send(c.Publish("sentinel", b"s"))  # arrives only if the connection survived
            sent = await conn.read_until_closed()
        finally:
            conn.broker.log.append(sent[-1] if sent else None)

    def outcome(m):
        with FakeBroker(handler) as broker:
            rec = Recorder()
            opts = rec.options(min_reconnect_delay_ms=5000, topic_aliasing_options=m.TopicAliasingOptions(
                inbound_behavior=m.InboundTopicAliasBehaviorType.ENABLED, inbound_cache_max_size=5))
            client = m.Client(m.ClientOptions(broker.host, broker.port, **opts))
            client.start()
            with rec.cond:
                assert rec.cond.wait_for(lambda r=rec: r.messages or r.of("disconnection"), T)
            client.stop()
            rec.wait("stopped")
            return (rec.wait("disconnection").exception.name, broker.log.wait(1)[0],
                    [x.topic for x in rec.messages])

    ours = outcome(crt_mqtt5)
    # The error name and the delivered messages are compared with the reference.  The packet
    # sent back may not reach the broker on either side: the client closes its socket with
    # the unread sentinel PUBLISH in its buffer, so the kernel may send RST, which discards
    # the DISCONNECT in flight.  So packets are compared where both sides' arrived.
    theirs = [outcome(ref_mqtt5) for _ in range(2)]
    assert all((name, topics) == (ours[0], ours[2]) for name, _, topics in theirs), (ours, theirs)
    packets = {repr(p) for _, p, _ in [ours, *theirs] if p is not None}
    assert len(packets) <= 1, (ours, theirs)


def test_offline_stats_same_as_reference():
    """Operation counts and sizes of queued (never sent) operations match the reference."""
    import time

    results = []
    for m in (crt_mqtt5, ref_mqtt5):
        client = m.Client(m.ClientOptions("127.0.0.1", 1))
        client.publish(m.PublishPacket(payload=b"", topic="a", qos=1))
        client.publish(m.PublishPacket(payload=b"12345", topic="abc", qos=1, content_type="ct",
                                       user_properties=[m.UserProperty("k", "v")]))
        client.publish(m.PublishPacket(payload=b"x" * 300, topic="t", qos=1))
        client.subscribe(m.SubscribePacket([m.Subscription("abc/#", 1), m.Subscription("x")],
                                           subscription_identifier=5))
        client.unsubscribe(m.UnsubscribePacket(["a", "bcd"], user_properties=[m.UserProperty("k", "v")]))
        deadline = time.monotonic() + T
        while True:  # the reference counts operations once its event loop has taken them
            stats = client.get_stats()
            if stats.incomplete_operation_count == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        results.append(plain(stats))
    assert results[0] == results[1]
    assert results[0]["incomplete_operation_count"] == 5
