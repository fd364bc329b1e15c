# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.mqtt5.Client against a private Mosquitto 2 broker on loopback."""
from __future__ import annotations

import itertools
import threading
import uuid

import pytest
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.mosquitto import Recorder, mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy import io, mqtt5
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0


def topic() -> str:
    return f"test/{uuid.uuid4().hex}"


def make_client(broker, rec: Recorder, *, port=None, connect=None, **kwargs) -> mqtt5.Client:
    kw = rec.options(**{"min_reconnect_delay_ms": 100, "max_reconnect_delay_ms": 500, **kwargs})
    return mqtt5.Client(mqtt5.ClientOptions(
        broker.host, port or broker.port, connect_options=connect, **kw))


def stop(client: mqtt5.Client, rec: Recorder, packet=None) -> None:
    n = len(rec.of("stopped"))
    client.stop(packet)
    rec.wait("stopped", n + 1)


def connected(broker, **kwargs):
    rec = Recorder()
    client = make_client(broker, rec, **kwargs)
    client.start()
    rec.wait("success")
    return client, rec


def test_connect_negotiated_settings_and_stop(mosquitto):
    rec = Recorder()
    client = make_client(mosquitto, rec, connect=mqtt5.ConnectPacket(
        client_id="crtpy-neg", keep_alive_interval_sec=30, session_expiry_interval_sec=60))
    client.start()
    data = rec.wait("success")
    assert isinstance(data.connack_packet, mqtt5.ConnackPacket)
    assert data.connack_packet.reason_code == mqtt5.ConnectReasonCode.SUCCESS
    assert data.connack_packet.session_present is False
    s = data.negotiated_settings
    assert s.client_id == "crtpy-neg"
    assert s.server_keep_alive_sec == 30
    assert s.session_expiry_interval_sec == 60
    assert s.receive_maximum_from_server == 20  # mosquitto's max_inflight_messages default
    assert s.rejoined_session is False
    assert rec.of("attempting")
    stop(client, rec)
    d = rec.wait("disconnection")
    assert d.exception.name == "AWS_ERROR_MQTT5_USER_REQUESTED_STOP"
    kinds = [k for k, _ in rec.events]
    assert kinds.index("disconnection") < kinds.index("stopped")


def test_assigned_client_id(mosquitto):
    client, rec = connected(mosquitto)
    s = rec.wait("success").negotiated_settings
    assert s.client_id and s.client_id == rec.wait("success").connack_packet.assigned_client_identifier
    stop(client, rec)


def test_qos0_qos1_round_trip_with_every_property(mosquitto):
    client, rec = connected(mosquitto)
    t = topic()
    suback = client.subscribe(mqtt5.SubscribePacket(
        [mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE)], subscription_identifier=42)).result(T)
    assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
    r0 = client.publish(mqtt5.PublishPacket(payload="text-0", topic=t, qos=mqtt5.QoS.AT_MOST_ONCE)).result(T)
    assert isinstance(r0, mqtt5.PublishCompletionData)
    assert r0.puback.reason_code is None
    r1 = client.publish(mqtt5.PublishPacket(
        payload=b"\x00\x01bin", topic=t, qos=mqtt5.QoS.AT_LEAST_ONCE,
        payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_BYTES,
        message_expiry_interval_sec=3600, response_topic="reply/here",
        correlation_data_bytes=b"\xff\xfecorr", content_type="application/octet-stream",
        user_properties=[mqtt5.UserProperty("k1", "v1"), mqtt5.UserProperty("k1", "v2"),
                         mqtt5.UserProperty("ünï", "çødé")])).result(T)
    assert r1.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
    m0, m1 = rec.wait_messages(2)
    assert m0.payload == b"text-0" and m0.qos == mqtt5.QoS.AT_MOST_ONCE and m0.topic == t
    assert m1.payload == b"\x00\x01bin" and m1.qos == mqtt5.QoS.AT_LEAST_ONCE
    assert m1.payload_format_indicator == mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_BYTES
    assert 3500 < m1.message_expiry_interval_sec <= 3600
    assert m1.response_topic == "reply/here"
    assert m1.correlation_data_bytes == b"\xff\xfecorr"
    assert m1.correlation_data is None  # not UTF-8
    assert m1.content_type == "application/octet-stream"
    assert [(u.name, u.value) for u in m1.user_properties] == [("k1", "v1"), ("k1", "v2"), ("ünï", "çødé")]
    assert m1.subscription_identifiers == [42]
    unsuback = client.unsubscribe(mqtt5.UnsubscribePacket([t, "never/subscribed"])).result(T)
    assert unsuback.reason_codes == [mqtt5.UnsubackReasonCode.SUCCESS,
                                     mqtt5.UnsubackReasonCode.NO_SUBSCRIPTION_EXISTED]
    stop(client, rec)


def test_publish_without_subscribers_reports_reason(mosquitto):
    client, rec = connected(mosquitto)
    r = client.publish(mqtt5.PublishPacket(payload=b"x", topic=topic(), qos=1)).result(T)
    assert r.puback.reason_code == mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS
    stop(client, rec)


def test_bad_credentials_refused_with_connack_reason(mosquitto_factory):
    broker = mosquitto_factory(users={"alice": "s3cret"})
    rec = Recorder()
    client = make_client(broker, rec, port=broker.auth_port,
                         connect=mqtt5.ConnectPacket(username="alice", password="wrong"))
    client.start()
    f = rec.wait("failure")
    assert f.exception.name == "AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED"
    assert f.connack_packet.reason_code in (mqtt5.ConnectReasonCode.BAD_USERNAME_OR_PASSWORD,
                                            mqtt5.ConnectReasonCode.NOT_AUTHORIZED)
    stop(client, rec)
    assert not rec.of("success")
    assert "wrong" not in repr(mqtt5.ConnectPacket(username="alice", password="wrong"))

    rec2 = Recorder()
    # (metrics would be appended to the username otherwise, as the reference does)
    good = make_client(broker, rec2, port=broker.auth_port, disable_metrics=True,
                       connect=mqtt5.ConnectPacket(username="alice", password="s3cret"))
    good.start()
    rec2.wait("success")
    stop(good, rec2)


def test_tls_success_and_failure(mosquitto_factory, pki):
    broker = mosquitto_factory(tls=True, pki=pki)
    opts = io.TlsContextOptions()
    opts.override_default_trust_store_from_path(None, pki.ca_cert)
    rec = Recorder()
    client = make_client(broker, rec, port=broker.tls_port, tls_ctx=io.ClientTlsContext(opts))
    client.start()
    rec.wait("success")
    t = topic()
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"over tls", topic=t, qos=1)).result(T)
    assert rec.wait_messages(1)[0].payload == b"over tls"
    stop(client, rec)

    bad = io.TlsContextOptions()
    bad.override_default_trust_store_from_path(None, pki.other_ca_cert)
    rec2 = Recorder()
    client2 = make_client(broker, rec2, port=broker.tls_port, tls_ctx=io.ClientTlsContext(bad))
    client2.start()
    f = rec2.wait("failure")
    assert f.connack_packet is None
    assert f.exception.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
    stop(client2, rec2)


def test_dns_failure():
    rec = Recorder()
    client = mqtt5.Client(mqtt5.ClientOptions("no-such-host.invalid", 1883, **rec.options()))
    client.start()
    f = rec.wait("failure", timeout=20)
    assert isinstance(f.exception, AwsCrtError)
    assert f.exception.name.startswith("AWS_IO_DNS"), f.exception.name
    stop(client, rec)


def test_connection_refused_then_retries_within_bounds(mosquitto_factory):
    from conftest import free_port

    class Dummy:
        host = "127.0.0.1"
        port = free_port()

    rec = Recorder()
    client = make_client(Dummy, rec, min_reconnect_delay_ms=50, max_reconnect_delay_ms=100)
    client.start()
    rec.wait("failure", count=3)
    assert rec.wait("failure").exception.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    stop(client, rec)


def test_server_closes_on_session_takeover(mosquitto):
    # Mosquitto 2.0.11 closes the socket without a DISCONNECT here (the DISCONNECT-with-
    # reason path is covered with the fake broker in test_mqtt5_fake_broker.py).
    cid = "crtpy-" + uuid.uuid4().hex[:8]
    first, rec1 = connected(mosquitto, connect=mqtt5.ConnectPacket(client_id=cid))
    second, rec2 = connected(mosquitto, connect=mqtt5.ConnectPacket(client_id=cid))
    d = rec1.wait("disconnection")
    assert d.exception.name in ("AWS_ERROR_MQTT5_DISCONNECT_RECEIVED", "AWS_IO_SOCKET_CLOSED")
    stop(first, rec1)
    stop(second, rec2)


def _will_test(broker, disconnect_packet, expect_will: bool) -> None:
    will_topic = topic()
    watcher, wrec = connected(broker)
    watcher.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(will_topic, 1)])).result(T)
    will = mqtt5.PublishPacket(payload=b"gone", topic=will_topic, qos=1)
    client, rec = connected(broker, connect=mqtt5.ConnectPacket(will=will))
    stop(client, rec, disconnect_packet)
    # a marker published after the stop arrives after the will, if any
    watcher.publish(mqtt5.PublishPacket(payload=b"marker", topic=will_topic, qos=1)).result(T)
    msgs = [m.payload for m in wrec.wait_messages(2 if expect_will else 1)]
    if expect_will:
        assert b"gone" in msgs
    else:
        assert msgs == [b"marker"]
    stop(watcher, wrec)


def test_stop_with_normal_disconnect_packet_suppresses_will(mosquitto):
    _will_test(mosquitto, mqtt5.DisconnectPacket(), expect_will=False)


def test_stop_with_disconnect_with_will(mosquitto):
    _will_test(mosquitto, mqtt5.DisconnectPacket(
        reason_code=mqtt5.DisconnectReasonCode.DISCONNECT_WITH_WILL_MESSAGE), expect_will=True)


def test_stop_without_disconnect_packet_drops_connection(mosquitto):
    _will_test(mosquitto, None, expect_will=True)


def test_reconnect_after_broker_restart_and_session_resumption(mosquitto_factory):
    broker = mosquitto_factory()
    client, rec = connected(broker, connect=mqtt5.ConnectPacket(
        client_id="crtpy-rejoin", session_expiry_interval_sec=600),
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS)
    assert rec.wait("success").negotiated_settings.rejoined_session is False
    broker.restart()
    rec.wait("disconnection")
    s = rec.wait("success", count=2).negotiated_settings
    assert s.rejoined_session is False  # persistence is off, the restarted broker forgot it
    # rejoin works against a live broker: drop the connection by stopping/starting the client
    client.stop()
    rec.wait("stopped")
    client.start()
    s3 = rec.wait("success", count=3)
    assert s3.negotiated_settings.rejoined_session is True
    assert s3.connack_packet.session_present is True
    stop(client, rec)
    assert len(rec.of("stopped")) == 2


def test_clean_session_behavior_never_rejoins(mosquitto):
    client, rec = connected(mosquitto, connect=mqtt5.ConnectPacket(
        client_id="crtpy-clean", session_expiry_interval_sec=600))
    client.stop()
    rec.wait("stopped")
    client.start()
    assert rec.wait("success", count=2).negotiated_settings.rejoined_session is False
    stop(client, rec)


def test_retained_and_subscription_options(mosquitto):
    t = topic()
    client, rec = connected(mosquitto)
    client.publish(mqtt5.PublishPacket(payload=b"kept", topic=t, qos=1, retain=True)).result(T)
    # retain handling: DONT_SEND gets nothing retained; SEND_ON_SUBSCRIBE gets it with retain set
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(
        t, 1, retain_handling_type=mqtt5.RetainHandlingType.DONT_SEND)])).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"live", topic=t, qos=1)).result(T)
    assert [m.payload for m in rec.wait_messages(1)] == [b"live"]
    other, orec = connected(mosquitto)
    other.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    m = orec.wait_messages(1)[0]
    assert m.payload == b"kept" and m.retain is True
    # no_local: our own publishes are not delivered back to us
    nl = topic()
    other.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(nl, 1, no_local=True)])).result(T)
    other.publish(mqtt5.PublishPacket(payload=b"self", topic=nl, qos=1)).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"from-other", topic=nl, qos=1)).result(T)
    msgs = orec.wait_messages(2)
    assert [x.payload for x in msgs[1:]] == [b"from-other"]
    # clear the retained message
    client.publish(mqtt5.PublishPacket(payload=b"", topic=t, qos=1, retain=True)).result(T)
    stop(client, rec)
    stop(other, orec)


def test_large_payload(mosquitto):
    client, rec = connected(mosquitto)
    t = topic()
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    payload = bytes(range(256)) * 4096  # 1 MiB
    client.publish(mqtt5.PublishPacket(payload=payload, topic=t, qos=1)).result(T)
    assert rec.wait_messages(1)[0].payload == payload
    stop(client, rec)


def test_receive_maximum_flow_control(mosquitto_factory):
    broker = mosquitto_factory(extra={"max_inflight_messages": 3})
    client, rec = connected(broker)
    assert rec.wait("success").negotiated_settings.receive_maximum_from_server == 3
    core = client._driver.core
    seen = []
    original = core._service

    def watched(now):
        original(now)
        seen.append(core.inflight_qos1)
    core._service = watched
    t = topic()
    futures = [client.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1)) for i in range(300)]
    for f in futures:
        f.result(T)
    assert seen and max(seen) <= 3
    assert max(seen) == 3  # the window was actually used
    stop(client, rec)


def test_maximum_packet_size_to_server_enforced(mosquitto_factory):
    broker = mosquitto_factory(extra={"max_packet_size": 2000})
    client, rec = connected(broker)
    assert rec.wait("success").negotiated_settings.maximum_packet_size_to_server == 2000
    with pytest.raises(AwsCrtError) as ei:
        client.publish(mqtt5.PublishPacket(payload=b"x" * 5000, topic=topic(), qos=1)).result(T)
    assert ei.value.name == "AWS_ERROR_MQTT5_PACKET_VALIDATION"
    # the connection is still usable
    client.publish(mqtt5.PublishPacket(payload=b"x" * 100, topic=topic(), qos=1)).result(T)
    assert not rec.of("disconnection")
    stop(client, rec)


def test_outbound_topic_alias_lru(mosquitto):
    client, rec = connected(mosquitto, topic_aliasing_options=mqtt5.TopicAliasingOptions(
        outbound_behavior=mqtt5.OutboundTopicAliasBehaviorType.LRU, outbound_cache_max_size=2))
    assert rec.wait("success").negotiated_settings.topic_alias_maximum_to_server > 0
    watcher, wrec = connected(mosquitto)
    base = topic()
    watcher.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(base + "/#", 1)])).result(T)
    sent = []
    for i in range(12):
        t = f"{base}/{i % 3}"
        sent.append((t, b"%d" % i))
        client.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1)).result(T)
    got = [(m.topic, m.payload) for m in wrec.wait_messages(12)]
    assert got == sent
    assert len(client._driver.core.alias_out) == 2
    stop(client, rec)
    stop(watcher, wrec)


def test_offline_queue_default_policy_keeps_qos1(mosquitto_factory):
    broker = mosquitto_factory()
    client, rec = connected(broker)
    broker.stop()
    rec.wait("disconnection")
    with pytest.raises(AwsCrtError) as ei:
        client.publish(mqtt5.PublishPacket(payload=b"q0", topic="a", qos=0)).result(T)
    assert ei.value.name == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    pending = client.publish(mqtt5.PublishPacket(payload=b"q1", topic="a", qos=1))
    sub = client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a", 1)]))
    stats = client.get_stats()
    assert stats.incomplete_operation_count == 2 and stats.unacked_operation_count == 0
    broker.start()
    assert pending.result(T).puback.reason_code in (mqtt5.PubackReasonCode.SUCCESS,
                                                    mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)
    assert sub.result(T).reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
    assert client.get_stats().incomplete_operation_count == 0
    stop(client, rec)


@pytest.mark.parametrize("behavior,qos1_ok,sub_ok", [
    (mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT, False, False),
    (mqtt5.ClientOperationQueueBehaviorType.FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT, True, False),
    (mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT, True, True),
])
def test_offline_queue_policies(mosquitto_factory, behavior, qos1_ok, sub_ok):
    broker = mosquitto_factory()
    client, rec = connected(broker, offline_queue_behavior=behavior)
    broker.stop()
    rec.wait("disconnection")
    ops = {
        "q0": client.publish(mqtt5.PublishPacket(payload=b"0", topic="a", qos=0)),
        "q1": client.publish(mqtt5.PublishPacket(payload=b"1", topic="a", qos=1)),
        "sub": client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription("a", 1)])),
    }
    broker.start()
    rec.wait("success", count=2)
    expect = {"q0": False, "q1": qos1_ok, "sub": sub_ok}
    for name, fut in ops.items():
        if expect[name]:
            fut.result(T)
        else:
            with pytest.raises(AwsCrtError) as ei:
                fut.result(T)
            assert ei.value.name == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    stop(client, rec)


def test_qos1_publishes_survive_broker_restart(mosquitto_factory):
    broker = mosquitto_factory()
    sub, srec = connected(broker, connect=mqtt5.ConnectPacket(
        client_id="crtpy-rel-sub", session_expiry_interval_sec=600),
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS)
    t = topic()
    sub.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    pub, prec = connected(broker)
    futures = [pub.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1)) for i in range(300)]
    broker.restart()
    prec.wait("success", count=2)
    srec.wait("success", count=2)
    # the restarted broker forgot the subscription: restore it, then publish more
    sub.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    later = [pub.publish(mqtt5.PublishPacket(payload=b"L%d" % i, topic=t, qos=1)) for i in range(100)]
    for f in futures + later:
        f.result(T)  # every QoS 1 publish was eventually acknowledged, none failed
    want = {b"L%d" % i for i in range(100)}
    with srec.cond:
        assert srec.cond.wait_for(lambda: want <= {m.payload for m in srec.messages}, T)
    stop(pub, prec)
    stop(sub, srec)


def test_callbacks_can_publish_and_block_without_deadlock(mosquitto):
    done = threading.Event()
    results = []
    holder = {}

    def on_publish(data):
        if data.publish_packet.topic.endswith("/ping"):
            f = holder["client"].publish(mqtt5.PublishPacket(
                payload=b"pong", topic=data.publish_packet.topic[:-5] + "/pong", qos=1))
            results.append(f.result(T))  # blocking inside a callback must not deadlock
        elif data.publish_packet.topic.endswith("/pong"):
            done.set()

    rec = Recorder()
    client = mqtt5.Client(mqtt5.ClientOptions(mosquitto.host, mosquitto.port, **rec.options(
        on_publish_callback_fn=on_publish)))
    holder["client"] = client
    client.start()
    rec.wait("success")
    t = topic()
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t + "/+", 1)])).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"ping", topic=t + "/ping", qos=1)).result(T)
    assert done.wait(T)
    assert results and results[0].puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
    holder.clear()
    stop(client, rec)


def test_manual_publish_acknowledgement(mosquitto):
    handles = []
    errors = []
    got = threading.Event()

    def on_publish(data):
        handles.append(data.acquire_publish_acknowledgement_control())
        try:
            data.acquire_publish_acknowledgement_control()
        except RuntimeError as e:
            errors.append(e)
        got.set()

    rec = Recorder()
    client = mqtt5.Client(mqtt5.ClientOptions(mosquitto.host, mosquitto.port, **rec.options(
        on_publish_callback_fn=on_publish)))
    client.start()
    rec.wait("success")
    t = topic()
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"m", topic=t, qos=1)).result(T)
    assert got.wait(T)
    assert errors, "a second acquire must raise"
    assert isinstance(handles[0], mqtt5.PublishAcknowledgementControlHandle)
    client.invoke_publish_acknowledgement(handles[0])
    with pytest.raises(ValueError):  # AWS_ERROR_INVALID_ARGUMENT: the handle was used
        client.invoke_publish_acknowledgement(handles[0])
    stop(client, rec)


def test_operations_before_start_are_queued(mosquitto):
    rec = Recorder()
    client = make_client(mosquitto, rec)
    t = topic()
    sub = client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)]))
    assert client.get_stats().incomplete_operation_count == 1
    client.start()
    assert sub.result(T).reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
    stop(client, rec)


def test_reliability_qos1_across_two_broker_restarts(mosquitto_factory):
    """10,000 QoS 1 messages while the broker restarts twice: none lost, first
    deliveries in publish order, lifecycle callbacks fire, the session survives."""
    n = 10_000
    broker = mosquitto_factory(extra={"persistence": "true", "max_queued_messages": 0,
                                      "max_inflight_messages": 20})
    t = topic()
    sub, srec = connected(broker, connect=mqtt5.ConnectPacket(
        client_id="crtpy-rel-" + uuid.uuid4().hex[:6], session_expiry_interval_sec=3600),
        # REJOIN_ALWAYS: Mosquitto 2.0.11 does not save a session that began with clean
        # start while it is connected at shutdown; a fresh unique id makes rejoin safe.
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS)
    sub.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    pub, prec = connected(broker)
    futures = []

    def publisher():
        for i in range(n):
            futures.append(pub.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1)))

    th = threading.Thread(target=publisher)
    th.start()
    srec.wait_messages(n // 5, timeout=60)
    broker.restart()
    srec.wait("success", 2, timeout=30)
    srec.wait_messages(len(srec.messages) + n // 5, timeout=60)
    broker.restart()
    srec.wait("success", 3, timeout=30)
    th.join(60)
    for f in futures:
        f.result(60)
    msgs = srec.wait_messages(n, timeout=60)
    with srec.cond:
        srec.cond.wait_for(lambda: len({m.payload for m in srec.messages}) >= n, 60)
        payloads = [int(m.payload) for m in srec.messages]
    assert set(payloads) == set(range(n))
    first_seen = list(dict.fromkeys(payloads))
    assert first_seen == sorted(first_seen), "first deliveries must keep publish order"
    assert len(srec.of("disconnection")) >= 2 and len(prec.of("disconnection")) >= 2
    assert all(s.negotiated_settings.rejoined_session for s in srec.of("success")[1:])
    del msgs
    stop(pub, prec)
    stop(sub, srec)


def test_reconnect_backoff_within_bounds():
    """With jitter NONE the waits between attempts follow min*2^k capped at max."""
    import time as _time

    from conftest import free_port

    class Closed:
        host = "127.0.0.1"
        port = free_port()

    stamps = []
    rec = Recorder()
    opts = rec.options(min_reconnect_delay_ms=100, max_reconnect_delay_ms=400,
                       retry_jitter_mode=io.ExponentialBackoffJitterMode.NONE)
    inner = opts["on_lifecycle_event_attempting_connect_fn"]
    opts["on_lifecycle_event_attempting_connect_fn"] = lambda d: (stamps.append(_time.monotonic()), inner(d))
    client = mqtt5.Client(mqtt5.ClientOptions(Closed.host, Closed.port, **opts))
    client.start()
    rec.wait("attempting", 6, timeout=20)
    stop(client, rec)
    gaps = [b - a for a, b in itertools.pairwise(stamps)][:5]
    expected = [0.1, 0.2, 0.4, 0.4, 0.4]
    for gap, want in zip(gaps, expected):
        assert gap >= want * 0.9, (gaps, expected)
        assert gap <= want + 2.0, (gaps, expected)  # generous: the machine may be loaded


def test_full_jitter_stays_under_max():
    import time as _time

    from conftest import free_port

    stamps = []
    rec = Recorder()
    opts = rec.options(min_reconnect_delay_ms=50, max_reconnect_delay_ms=150,
                       retry_jitter_mode=io.ExponentialBackoffJitterMode.FULL)
    inner = opts["on_lifecycle_event_attempting_connect_fn"]
    opts["on_lifecycle_event_attempting_connect_fn"] = lambda d: (stamps.append(_time.monotonic()), inner(d))
    client = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", free_port(), **opts))
    client.start()
    rec.wait("attempting", 8, timeout=20)
    stop(client, rec)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len({round(g, 3) for g in gaps}) > 1, "full jitter should vary the waits"


def test_shared_subscription_distributes_messages(mosquitto):
    t = topic()
    a, arec = connected(mosquitto)
    b, brec = connected(mosquitto)
    for cl in (a, b):
        cl.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(f"$share/grp/{t}", 1)])).result(T)
    pub, prec = connected(mosquitto)
    for i in range(40):
        pub.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1)).result(T)
    import time as _time
    end = _time.monotonic() + T
    while len(arec.messages) + len(brec.messages) < 40 and _time.monotonic() < end:
        _time.sleep(0.02)
    got = [m.payload for m in arec.messages] + [m.payload for m in brec.messages]
    assert sorted(got) == sorted(b"%d" % i for i in range(40))
    assert arec.messages and brec.messages, "both group members should get some"
    for cl, r in ((a, arec), (b, brec), (pub, prec)):
        stop(cl, r)


def test_retain_as_published(mosquitto):
    t = topic()
    client, rec = connected(mosquitto)
    client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1, retain_as_published=True)])).result(T)
    other, orec = connected(mosquitto)
    other.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    client.publish(mqtt5.PublishPacket(payload=b"r", topic=t, qos=1, retain=True)).result(T)
    assert rec.wait_messages(1)[0].retain is True      # flag kept
    assert orec.wait_messages(1)[0].retain is False    # flag cleared for live delivery
    client.publish(mqtt5.PublishPacket(payload=b"", topic=t, qos=1, retain=True)).result(T)
    stop(client, rec)
    stop(other, orec)


def test_outbound_topic_alias_manual(mosquitto):
    client, rec = connected(mosquitto, topic_aliasing_options=mqtt5.TopicAliasingOptions(
        outbound_behavior=mqtt5.OutboundTopicAliasBehaviorType.MANUAL))
    maximum = rec.wait("success").negotiated_settings.topic_alias_maximum_to_server
    watcher, wrec = connected(mosquitto)
    t = topic()
    watcher.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    for i in range(3):
        client.publish(mqtt5.PublishPacket(payload=b"%d" % i, topic=t, qos=1, topic_alias=1)).result(T)
    assert [(m.topic, m.payload) for m in wrec.wait_messages(3)] == [(t, b"0"), (t, b"1"), (t, b"2")]
    with pytest.raises(AwsCrtError) as ei:
        client.publish(mqtt5.PublishPacket(payload=b"x", topic=t, qos=1, topic_alias=maximum + 1)).result(T)
    assert ei.value.name == "AWS_ERROR_MQTT5_INVALID_OUTBOUND_TOPIC_ALIAS"
    stop(client, rec)
    stop(watcher, wrec)


def test_through_http_proxy_tunnel(mosquitto, tmp_path):
    from conftest import free_port, require_binary
    from helpers.http_servers import Tinyproxy

    from crtpy import http

    proxy = Tinyproxy(require_binary("tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"),
                      str(tmp_path), free_port())
    try:
        client, rec = connected(mosquitto, http_proxy_options=http.HttpProxyOptions("127.0.0.1", proxy.port))
        t = topic()
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
        client.publish(mqtt5.PublishPacket(payload=b"via proxy", topic=t, qos=1)).result(T)
        assert rec.wait_messages(1)[0].payload == b"via proxy"
        stop(client, rec)
        with open(proxy.log) as f:
            assert "CONNECT" in f.read()
    finally:
        proxy.stop()


def test_over_websocket_with_handshake_transform(mosquitto):
    from helpers.ws_mqtt_relay import start_relay

    seen = []

    def transform(args):
        seen.append((args.http_request.method, args.http_request.path))
        args.http_request.headers.add("x-signed", "yes")
        args.set_done()

    with start_relay(mosquitto.host, mosquitto.port) as relay:
        client, rec = connected(mosquitto, port=relay.port, websocket_handshake_transform=transform)
        t = topic()
        client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
        payload = bytes(range(256)) * 1024
        client.publish(mqtt5.PublishPacket(payload=payload, topic=t, qos=1)).result(T)
        assert rec.wait_messages(1)[0].payload == payload
        stop(client, rec)
        assert seen == [("GET", "/mqtt")]
        assert relay.subprotocols == ["mqtt"] and relay.paths == ["/mqtt"]


def test_websocket_transform_failure_fails_connection(mosquitto):
    from helpers.ws_mqtt_relay import start_relay

    def transform(args):
        args.set_done(ValueError("no credentials"))

    with start_relay(mosquitto.host, mosquitto.port) as relay:
        rec = Recorder()
        client = make_client(mosquitto, rec, port=relay.port, websocket_handshake_transform=transform)
        client.start()
        f = rec.wait("failure")
        assert isinstance(f.exception, ValueError)
        stop(client, rec)


def test_dropping_the_client_stops_it(mosquitto):
    import gc

    client, rec = connected(mosquitto)
    del client
    gc.collect()
    rec.wait("stopped")
    assert rec.wait("disconnection").exception.name == "AWS_ERROR_MQTT5_USER_REQUESTED_STOP"


def test_maximum_packet_size_from_server_announced(mosquitto):
    """Our CONNECT's maximum packet size makes the broker withhold larger messages."""
    small, srec = connected(mosquitto, connect=mqtt5.ConnectPacket(maximum_packet_size=1000))
    t = topic()
    small.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, 1)])).result(T)
    pub, prec = connected(mosquitto)
    pub.publish(mqtt5.PublishPacket(payload=b"x" * 5000, topic=t, qos=1)).result(T)
    pub.publish(mqtt5.PublishPacket(payload=b"small", topic=t, qos=1)).result(T)
    assert [m.payload for m in srec.wait_messages(1)] == [b"small"]
    assert not srec.of("disconnection")
    stop(small, srec)
    stop(pub, prec)


def test_qos0_flood_respects_write_backpressure(mosquitto):
    client, rec = connected(mosquitto)
    t = topic()
    driver = client._driver
    sizes = []
    original = driver.after_core

    def watched():
        original()
        proto = driver.protocol
        if proto is not None and proto.transport is not None:
            sizes.append(proto.transport.get_write_buffer_size())
    driver.after_core = watched
    payload = b"x" * 65536
    futures = [client.publish(mqtt5.PublishPacket(payload=payload, topic=t)) for _ in range(300)]
    for f in futures:
        f.result(30)
    # 20 MB were published; the client never buffered more than a few batches of them
    assert sizes and max(sizes) < 4 * 1024 * 1024, max(sizes)
    del driver.after_core
    stop(client, rec)
