"""Drop-in script: the AWS IoT Device SDK v2 (awsiot) on crtpy against a local Mosquitto.
Usage: dropin_iot_script.py crtpy|awscrt CONFIG_JSON (ports, PKI paths, relay port);
awscrt runs the reference, for comparison.  Each stage's
outcome goes into the JSON line printed at the end (errors as text, so one failing stage
does not hide the others)."""
from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from dropin_run import install

faulthandler.dump_traceback_later(float(os.environ.get("DROPIN_DUMP_AFTER", "60")), exit=True)
if sys.argv[1] == "crtpy":
    awscrt = install()

import awscrt.auth
import awscrt.mqtt
import awscrt.mqtt5
import awscrt.mqtt_request_response
import awsiot
from awsiot import iotshadow, mqtt5_client_builder, mqtt_connection_builder

cfg = json.loads(sys.argv[2])
T = 10.0
result: dict[str, Any] = {"awscrt_module": awscrt.mqtt5.Client.__module__,
                          "mqtt_module": awscrt.mqtt.Connection.__module__}


def stage(name: str) -> Callable[[Callable[[], Any]], None]:
    def run(fn: Callable[[], Any]) -> None:
        try:
            result[name] = fn()
        except BaseException as exc:  # noqa: BLE001
            result[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
    return run


class M5Events:
    def __init__(self) -> None:
        self.connected: Future = Future()
        self.stopped: Future = Future()
        self.failure: Future = Future()
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Condition()

    def kwargs(self) -> dict[str, Any]:
        return {"on_lifecycle_connection_success": lambda d: self.connected.done() or self.connected.set_result(d),
                "on_lifecycle_stopped": lambda d: self.stopped.done() or self.stopped.set_result(d),
                "on_lifecycle_connection_failure": lambda d: self.failure.done() or self.failure.set_result(d),
                "on_publish_received": self._publish}

    def _publish(self, data: Any) -> None:
        with self.got:
            self.messages.append((data.publish_packet.topic, bytes(data.publish_packet.payload)))
            self.got.notify_all()

    def wait_messages(self, n: int) -> list[tuple[str, bytes]]:
        with self.got:
            if not self.got.wait_for(lambda: len(self.messages) >= n, T):
                raise TimeoutError(f"{len(self.messages)} of {n} messages")
            return list(self.messages)


def m5_pubsub(client: Any, ev: M5Events, topic: str) -> dict:
    client.start()
    try:
        conn = ev.connected.result(T)
        sub = client.subscribe(awscrt.mqtt5.SubscribePacket(
            subscriptions=[awscrt.mqtt5.Subscription(topic_filter=topic + "/#", qos=awscrt.mqtt5.QoS.AT_LEAST_ONCE)]
        )).result(T)
        pub = client.publish(awscrt.mqtt5.PublishPacket(topic=topic + "/x", payload=b"hello " + topic.encode(),
                                                        qos=awscrt.mqtt5.QoS.AT_LEAST_ONCE)).result(T)
        msgs = ev.wait_messages(1)
        return {"connected": True, "client_id": conn.negotiated_settings.client_id,
                "suback": [int(c) for c in sub.reason_codes],
                "puback": int(pub.puback.reason_code), "messages": [[t, p.decode()] for t, p in msgs],
                "client_module": type(client).__module__}
    finally:
        client.stop()
        ev.stopped.result(T)


common5 = {"endpoint": "127.0.0.1", "ca_filepath": cfg["ca"], "min_reconnect_delay_ms": 100,
           "max_reconnect_delay_ms": 500}


@stage("m5_mtls_path")
def _() -> dict:
    ev = M5Events()
    client = mqtt5_client_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                 client_id="dropin-m5-path", **common5, **ev.kwargs())
    return m5_pubsub(client, ev, "dropin/m5path")


@stage("m5_mtls_bytes")
def _() -> dict:
    ev = M5Events()
    with open(cfg["cert"], "rb") as f:
        cert = f.read()
    with open(cfg["key"], "rb") as f:
        key = f.read()
    with open(cfg["ca"], "rb") as f:
        ca = f.read()
    opts = {k: v for k, v in common5.items() if k != "ca_filepath"}
    client = mqtt5_client_builder.mtls_from_bytes(cert, key, ca_bytes=ca, port=cfg["tls_port"],
                                                  client_id="dropin-m5-bytes", **opts, **ev.kwargs())
    return m5_pubsub(client, ev, "dropin/m5bytes")


@stage("m5_ws_custom")
def _() -> dict:
    ev = M5Events()
    calls: list[str] = []

    def transform(transform_args: Any, **kwargs: Any) -> None:
        calls.append(transform_args.http_request.path)
        transform_args.http_request.headers.add("x-dropin", "m5")
        transform_args.set_done()

    client = mqtt5_client_builder.websockets_with_custom_handshake(
        transform, port=cfg["wss_port"], client_id="dropin-m5-ws", **common5, **ev.kwargs())
    out = m5_pubsub(client, ev, "dropin/m5ws")
    out["transform_calls"] = calls
    return out


@stage("m5_ws_sigv4")
def _() -> dict:
    ev = M5Events()
    provider = awscrt.auth.AwsCredentialsProvider.new_static("AKIDDROPIN", "dropin-secret")
    client = mqtt5_client_builder.websockets_with_default_aws_signing(
        region="us-east-1", credentials_provider=provider, port=cfg["wss_port"], client_id="dropin-m5-sig",
        **common5, **ev.kwargs())
    return m5_pubsub(client, ev, "dropin/m5sig")


@stage("m5_wrong_ca")
def _() -> dict:
    ev = M5Events()
    opts = dict(common5, ca_filepath=cfg["other_ca"])
    client = mqtt5_client_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                 client_id="dropin-m5-badca", **opts, **ev.kwargs())
    client.start()
    try:
        fail = ev.failure.result(T)
        return {"connected": ev.connected.done(), "error_name": getattr(fail.exception, "name", repr(fail.exception))}
    finally:
        client.stop()
        ev.stopped.result(T)


def m3_pubsub(conn: Any, topic: str) -> dict:
    got: Future = Future()
    connected = conn.connect().result(T)
    try:
        sub_future, _ = conn.subscribe(topic + "/#", awscrt.mqtt.QoS.AT_LEAST_ONCE,
                                       callback=lambda topic, payload, **kw: got.done() or got.set_result((topic, payload)))
        sub = sub_future.result(T)
        pub_future, _ = conn.publish(topic + "/x", b"hello " + topic.encode(), awscrt.mqtt.QoS.AT_LEAST_ONCE)
        pub_future.result(T)
        t, p = got.result(T)
        return {"connected": True, "session_present": connected["session_present"], "granted": int(sub["qos"]),
                "message": [t, bytes(p).decode()], "connection_module": type(conn).__module__}
    finally:
        conn.disconnect().result(T)


common3 = {"endpoint": "127.0.0.1", "ca_filepath": cfg["ca"], "clean_session": True, "keep_alive_secs": 30}


@stage("m3_mtls_path")
def _() -> dict:
    conn = mqtt_connection_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                  client_id="dropin-m3-path", **common3)
    return m3_pubsub(conn, "dropin/m3path")


@stage("m3_ws_custom")
def _() -> dict:
    calls: list[str] = []

    def transform(transform_args: Any, **kwargs: Any) -> None:
        calls.append(transform_args.http_request.path)
        transform_args.set_done()

    conn = mqtt_connection_builder.websockets_with_custom_handshake(
        transform, port=cfg["wss_port"], client_id="dropin-m3-ws", **common3)
    out = m3_pubsub(conn, "dropin/m3ws")
    out["transform_calls"] = calls
    return out


@stage("m3_ws_sigv4")
def _() -> dict:
    provider = awscrt.auth.AwsCredentialsProvider.new_static("AKIDDROPIN3", "dropin-secret", "session-token")
    conn = mqtt_connection_builder.websockets_with_default_aws_signing(
        region="eu-west-1", credentials_provider=provider, port=cfg["wss_port"], client_id="dropin-m3-sig",
        **common3)
    return m3_pubsub(conn, "dropin/m3sig")


@stage("m3_wrong_ca")
def _() -> dict:
    conn = mqtt_connection_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                  client_id="dropin-m3-badca", **dict(common3, ca_filepath=cfg["other_ca"]))
    try:
        conn.connect().result(T)
    except Exception as exc:  # noqa: BLE001
        return {"connected": False, "error_name": getattr(exc, "name", repr(exc))}
    conn.disconnect().result(T)
    return {"connected": True}


def shadow_ops(protocol_client: Any, thing: str) -> dict:
    rr_opts = awscrt.mqtt_request_response.ClientOptions(max_request_response_subscriptions=4,
                                                         max_streaming_subscriptions=2,
                                                         operation_timeout_in_seconds=10)
    shadow = iotshadow.IotShadowClientV2(protocol_client, rr_opts)
    out: dict[str, Any] = {"rr_module": type(shadow._rr_client).__module__}
    got = shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(T)
    out["get"] = {"reported": got.state.reported, "version": got.version, "client_token": got.client_token}
    try:
        shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="no-such-thing")).result(T)
        out["get_missing"] = "accepted"
    except awsiot.V2ServiceException as exc:
        out["get_missing"] = {"code": exc.modeled_error.code if exc.modeled_error else None,
                              "inner": repr(exc.inner_error) if exc.inner_error else None}
    events: Future = Future()
    subscribed: Future = Future()
    stream = shadow.create_shadow_updated_stream(
        iotshadow.ShadowUpdatedSubscriptionRequest(thing_name=thing),
        awsiot.ServiceStreamOptions(
            incoming_event_listener=lambda e: events.done() or events.set_result(e),
            subscription_status_listener=lambda s: (
                s.type == awscrt.mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED
                and not subscribed.done() and subscribed.set_result(s))))
    stream.open()
    subscribed.result(T)
    upd = shadow.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(reported={"color": "green"}))).result(T)
    ev = events.result(T)
    out["update"] = {"version": upd.version, "client_token": upd.client_token}
    out["stream_event"] = {"previous": ev.previous.state.reported, "current": ev.current.state.reported,
                           "version": ev.current.version}
    return out


@stage("shadow_mqtt5")
def _() -> dict:
    ev = M5Events()
    client = mqtt5_client_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                 client_id="dropin-shadow5", **common5, **ev.kwargs())
    client.start()
    try:
        ev.connected.result(T)
        return shadow_ops(client, "dropin-thing-5")
    finally:
        client.stop()
        ev.stopped.result(T)


@stage("shadow_mqtt311")
def _() -> dict:
    conn = mqtt_connection_builder.mtls_from_path(cfg["cert"], cfg["key"], port=cfg["tls_port"],
                                                  client_id="dropin-shadow3", **common3)
    conn.connect().result(T)
    try:
        return shadow_ops(conn, "dropin-thing-3")
    finally:
        conn.disconnect().result(T)


print(json.dumps(result, default=repr))
sys.stdout.flush()
