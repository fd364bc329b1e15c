"""crtpy.mqtt5 public types and argument validation (no broker needed), checked
against the reference awscrt.mqtt5 where it helps."""
from __future__ import annotations

import dataclasses
import enum

import pytest

from crtpy import mqtt5
from crtpy.exceptions import AwsCrtError

awscrt_mqtt5 = pytest.importorskip("awscrt.mqtt5")

pytestmark = pytest.mark.usefixtures("leak_check")


def _public_classes(mod):
    return {n: v for n, v in vars(mod).items() if not n.startswith("_")
            and isinstance(v, type) and getattr(v, "__module__", "") == mod.__name__}


def test_enums_and_dataclass_defaults_match_reference():
    ours = _public_classes(mqtt5)
    ref = _public_classes(awscrt_mqtt5)
    assert set(ref) <= set(ours)
    for name, rcls in ref.items():
        ocls = ours[name]
        if issubclass(rcls, enum.Enum):
            assert {m.name: m.value for m in ocls} == {m.name: m.value for m in rcls}, name
        elif dataclasses.is_dataclass(rcls):
            rf = [(f.name, f.default) for f in dataclasses.fields(rcls)]
            of = [(f.name, f.default) for f in dataclasses.fields(ocls)]
            assert [n for n, _ in of] == [n for n, _ in rf], name
            for (n, od), (_, rd) in zip(of, rf):
                if isinstance(rd, enum.Enum):
                    assert od.name == rd.name and od.value == rd.value, (name, n)
                elif rd is dataclasses.MISSING:
                    assert od is dataclasses.MISSING, (name, n)
                else:
                    assert od == rd, (name, n)


def test_connack_server_keep_alive_alias():
    c = mqtt5.ConnackPacket()
    c.server_keep_alive = 7
    assert c.server_keep_alive_sec == 7


def _client(**kw):
    return mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", 1, **kw))


@pytest.mark.parametrize("packet,name", [
    (mqtt5.PublishPacket(topic="a/#", qos=1), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="a/+/b"), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="", qos=1), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="a\x00b"), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="a", topic_alias=0), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="a", response_topic="r/#"), "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"),
    (mqtt5.PublishPacket(topic="a", user_properties=[mqtt5.UserProperty("k\x00", "v")]),
     "AWS_ERROR_MQTT5_USER_PROPERTY_VALIDATION"),
])
def test_publish_validation(packet, name):
    client = _client()
    with pytest.raises(AwsCrtError) as ei:
        client.publish(packet)
    assert ei.value.name == name


def test_publish_payload_type():
    client = _client()
    with pytest.raises(TypeError):
        client.publish(mqtt5.PublishPacket(topic="a", payload=5))
    with pytest.raises(TypeError):
        client.publish("not a packet")


@pytest.mark.parametrize("subs", [
    [], [mqtt5.Subscription("a/#/b")], [mqtt5.Subscription("a+")], [mqtt5.Subscription("")],
    [mqtt5.Subscription("$share/g/a", no_local=True)], [mqtt5.Subscription("$share//a")],
])
def test_subscribe_validation(subs):
    client = _client()
    with pytest.raises(AwsCrtError) as ei:
        client.subscribe(mqtt5.SubscribePacket(subs))
    assert ei.value.name == "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"


def test_subscribe_identifier_range():
    client = _client()
    with pytest.raises(AwsCrtError):
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a")], subscription_identifier=0))


@pytest.mark.parametrize("filters", [[], ["a/#/b"], ["x\x00"]])
def test_unsubscribe_validation(filters):
    client = _client()
    with pytest.raises(AwsCrtError) as ei:
        client.unsubscribe(mqtt5.UnsubscribePacket(filters))
    assert ei.value.name == "AWS_ERROR_MQTT5_UNSUBSCRIBE_OPTIONS_VALIDATION"


def test_offline_qos0_publish_fails_by_policy_without_start():
    client = _client()
    fut = client.publish(mqtt5.PublishPacket(topic="a", payload=b"x"))
    with pytest.raises(AwsCrtError) as ei:
        fut.result(5)
    assert ei.value.name == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    # QoS 1 stays queued under the default policy
    client.publish(mqtt5.PublishPacket(topic="a", payload=b"x", qos=1))
    stats = client.get_stats()
    assert stats.incomplete_operation_count == 1 and stats.incomplete_operation_size > 0
    assert stats.unacked_operation_count == 0


def test_callback_signature_checked():
    with pytest.raises(TypeError):
        _client(on_publish_callback_fn=lambda: None)
    with pytest.raises(TypeError):
        _client(on_lifecycle_event_stopped_fn=5)


def test_connect_options_validation():
    with pytest.raises(AwsCrtError) as ei:
        _client(connect_options=mqtt5.ConnectPacket(receive_maximum=0))
    assert ei.value.name == "AWS_ERROR_MQTT5_CONNECT_OPTIONS_VALIDATION"
    with pytest.raises(AwsCrtError):
        _client(connect_options=mqtt5.ConnectPacket(will=mqtt5.PublishPacket(topic="w/#")))
    with pytest.raises(AwsCrtError) as ei:
        _client(min_reconnect_delay_ms=5000, max_reconnect_delay_ms=1000)
    assert ei.value.name == "AWS_ERROR_MQTT5_CLIENT_OPTIONS_VALIDATION"


def test_new_connection_gives_a_311_connection():
    from crtpy import mqtt

    client = _client()
    conn = client.new_connection()
    assert isinstance(conn, mqtt.Connection)
    assert conn.client is client


def test_password_never_in_repr():
    p = mqtt5.ConnectPacket(username="u", password="hunter2")
    assert "hunter2" not in repr(p)
    assert "u" in repr(p)


def test_stop_before_start_is_harmless():
    client = _client()
    client.stop()
    client.stop(mqtt5.DisconnectPacket())
    with pytest.raises(TypeError):
        client.stop("nope")


def test_aws_iot_core_limits():
    client = _client(extended_validation_and_flow_control_options=(
        mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS))
    with pytest.raises(AwsCrtError) as ei:
        client.publish(mqtt5.PublishPacket(topic="/".join("abcdefghi"), qos=1))
    assert ei.value.name == "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"
    with pytest.raises(AwsCrtError):
        client.publish(mqtt5.PublishPacket(topic="x" * 257, qos=1))
    client.publish(mqtt5.PublishPacket(topic="$aws/rules/r/" + "/".join("abcdefgh"), qos=1))
    with pytest.raises(AwsCrtError) as ei:
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(f"t{i}") for i in range(9)]))
    assert ei.value.name == "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"
    with pytest.raises(AwsCrtError):
        _client(extended_validation_and_flow_control_options=1,
                connect_options=mqtt5.ConnectPacket(client_id="c" * 129))
    # without the option the same packets are accepted
    plain = _client()
    plain.publish(mqtt5.PublishPacket(topic="/".join("abcdefghi"), qos=1))


def test_qos2_rejected_like_the_reference():
    client = _client()
    fut = client.publish(mqtt5.PublishPacket(topic="a", qos=mqtt5.QoS.EXACTLY_ONCE))
    with pytest.raises(AwsCrtError) as ei:
        fut.result(5)
    assert ei.value.name == "AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION"
    with pytest.raises(AwsCrtError) as ei:
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a", mqtt5.QoS.EXACTLY_ONCE)]))
    assert ei.value.name == "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"
