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
        return dict(
            connect_options=m.ConnectPacket(
                keep_alive_interval_sec=33, client_id="cid", username="u", password="pw",
                session_expiry_interval_sec=99, request_response_information=True,
                request_problem_information=False, receive_maximum=7, maximum_packet_size=5000,
                will_delay_interval_sec=4, will=will, user_properties=[m.UserProperty("x", "y")]),
            topic_aliasing_options=m.TopicAliasingOptions(
                inbound_behavior=m.InboundTopicAliasBehaviorType.ENABLED, inbound_cache_max_size=9),
            disable_metrics=True)

    return {
        "default": lambda m: {},
        "full": full,
        "inbound_alias_default": lambda m: dict(topic_aliasing_options=m.TopicAliasingOptions(
            inbound_behavior=m.InboundTopicAliasBehaviorType.ENABLED)),
        "rejoin_always": lambda m: dict(session_behavior=m.ClientSessionBehaviorType.REJOIN_ALWAYS),
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
