"""IoT SDK metrics: the classes, the feature list, and the CONNECT username, checked
against usernames captured from the reference's MQTT clients on loopback."""
from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable

import pytest
from helpers.certs import pki  # noqa: F401 - fixture

import crtpy.aws_iot_metrics as metrics
from crtpy import io as crt_io
from crtpy import mqtt5 as crt_mqtt5
from crtpy.aws_iot_metrics import (
    IOT_SDK_METRICS_FEATURE_VERSION,
    AWSIoTMetrics,
    IoTMetricsMetadata,
    _build_username,
    _create_metrics,
    _create_metrics_mqtt3,
    _get_encoded_feature_list,
    _merge_feature_lists,
    _mqtt3_username,
    _mqtt5_username,
)

TAIL5 = "Metadata=(CRTVersion=0.38.0;IoTSDKFeature=F/5,G/A;IoTSDKMetricsVersion=1)"
BASE5 = "SDK=IoTDeviceSDK/Python&Platform=Unix&" + TAIL5

# (username, expected CONNECT username) as the reference's MQTT 5 client sends them
KNOWN_MQTT5 = [
    (None, "?" + BASE5),
    ("", "?" + BASE5),
    ("user", "user?" + BASE5),
    ("user?a=b", "user?a=b&" + BASE5),
    ("user?SDK=Foo&Platform=X", "user?SDK=Foo&Platform=X&" + TAIL5),
    ("user?Metadata=(a=b)", ("user?Metadata=(a=b;CRTVersion=0.38.0;IoTSDKFeature=F/5,G/A;IoTSDKMetricsVersion=1)"
                             "&SDK=IoTDeviceSDK/Python&Platform=Unix")),
    ("SDK=x", "SDK=x?" + BASE5),
    ("user?sdk=x", "user?sdk=x&" + BASE5),
    ("user?Platform=x", "user?Platform=x&SDK=IoTDeviceSDK/Python&" + TAIL5),
    ("u?Metadata=(CRTVersion=9;x=y)&foo=bar",
     ("u?Metadata=(CRTVersion=9;x=y;IoTSDKFeature=F/5,G/A;IoTSDKMetricsVersion=1)&foo=bar"
      "&SDK=IoTDeviceSDK/Python&Platform=Unix")),
    ("u?Metadata=x", "u?Metadata=x&SDK=IoTDeviceSDK/Python&Platform=Unix"),
    ("u?Metadata=()", ("u?Metadata=(CRTVersion=0.38.0;IoTSDKFeature=F/5,G/A;IoTSDKMetricsVersion=1)"
                       "&SDK=IoTDeviceSDK/Python&Platform=Unix")),
    ("u?", "u?" + BASE5),
    ("u?&", "u?" + BASE5),
    ("u?SDK=a&SDK=b", "u?SDK=a&SDK=b&Platform=Unix&" + TAIL5),
    ("u?a=b?c=d", "u?a=b?c=d&" + BASE5),
    ("u?Metadata=(x=y", "u?Metadata=(x=y&SDK=IoTDeviceSDK/Python&Platform=Unix"),
    ("u?SDK", "u?SDK&Platform=Unix&" + TAIL5),
    ("u?Platform=&x", "u?Platform&x&SDK=IoTDeviceSDK/Python&" + TAIL5),
    ("u?Metadata=(x;y=1;;z=)", ("u?Metadata=(x;y=1;z;CRTVersion=0.38.0;IoTSDKFeature=F/5,G/A;"
                                "IoTSDKMetricsVersion=1)&SDK=IoTDeviceSDK/Python&Platform=Unix")),
    ("u?=x&y", "u?=x&y&" + BASE5),
    ("u?SDK=&Platform=P&Metadata=(k=v)",
     "u?SDK&Platform=P&Metadata=(k=v;CRTVersion=0.38.0;IoTSDKFeature=F/5,G/A;IoTSDKMetricsVersion=1)"),
]


def options5(username: str | None = None, **kwargs) -> crt_mqtt5.ClientOptions:
    return crt_mqtt5.ClientOptions(host_name="localhost", port=1883,
                                   connect_options=crt_mqtt5.ConnectPacket(client_id="c", username=username),
                                   **kwargs)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Platform=Unix answers")
@pytest.mark.parametrize("username, expected", KNOWN_MQTT5)
def test_known_usernames_mqtt5(username, expected):
    assert _mqtt5_username(options5(username)) == expected


def test_disable_metrics_keeps_username():
    assert _mqtt5_username(options5("user", disable_metrics=True)) == "user"
    assert _mqtt5_username(options5(None, disable_metrics=True)) is None
    assert _mqtt3_username("user", disable_metrics=True) == "user"
    assert _build_username("user", None) == "user"


def test_mqtt3_feature_list():
    assert _mqtt3_username("user") == \
        "user?SDK=IoTDeviceSDK/Python&Platform=Unix&Metadata=(CRTVersion=0.38.0;" \
        "IoTSDKFeature=F/3,G/A;IoTSDKMetricsVersion=1)"


def test_feature_list_options():
    opts = options5(retry_jitter_mode=crt_io.ExponentialBackoffJitterMode.FULL,
                    session_behavior=crt_mqtt5.ClientSessionBehaviorType.CLEAN,
                    offline_queue_behavior=crt_mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
                    topic_aliasing_options=crt_mqtt5.TopicAliasingOptions(
                        outbound_behavior=crt_mqtt5.OutboundTopicAliasBehaviorType.LRU,
                        inbound_behavior=crt_mqtt5.InboundTopicAliasBehaviorType.ENABLED))
    assert _get_encoded_feature_list(opts) == "A/B,B/A,C/C,D/B,E/A,F/5,G/A"
    # DEFAULT values are not sent
    opts = options5(retry_jitter_mode=crt_io.ExponentialBackoffJitterMode.DEFAULT,
                    session_behavior=crt_mqtt5.ClientSessionBehaviorType.DEFAULT)
    assert _get_encoded_feature_list(opts) == "F/5,G/A"


def test_user_metrics_merge_rules():
    user = AWSIoTMetrics(library_name="MySDK/1.0", metadata_entries=[
        IoTMetricsMetadata("IoTSDKVersion", "1.2.3"), IoTMetricsMetadata("IoTSDKMetricsVersion", "1"),
        IoTMetricsMetadata("IoTSDKFeature", "A/C,Z/Q"), IoTMetricsMetadata("CRTVersion", "x")])
    assert _mqtt5_username(options5("u", metrics=user)) == \
        "u?SDK=MySDK/1.0&Platform=Unix&Metadata=(CRTVersion=0.38.0;IoTSDKVersion=1.2.3;" \
        "IoTSDKFeature=F/5,G/A,A/C,Z/Q;IoTSDKMetricsVersion=1)"
    # another metrics version: the SDK's features are ignored
    other = AWSIoTMetrics(library_name="L", metadata_entries=[
        IoTMetricsMetadata("IoTSDKMetricsVersion", "2"), IoTMetricsMetadata("IoTSDKFeature", "A/C")])
    assert _mqtt5_username(options5("u", metrics=other)) == \
        "u?SDK=L&Platform=Unix&" + TAIL5
    # an empty library name falls back to the C SDK's name
    assert _mqtt5_username(options5(None, metrics=AWSIoTMetrics(library_name="", metadata_entries=[]))) == \
        "?SDK=IoTDeviceSDK/C&Platform=Unix&" + TAIL5
    assert _merge_feature_lists("A/B,F/5", "A/C,Z/1,junk") == "A/C,F/5,Z/1"
    m = _create_metrics(None, "F/3")
    assert m.library_name == "IoTDeviceSDK/Python"
    assert [(e.key, e.value) for e in m.metadata_entries] == [
        ("CRTVersion", "0.38.0"), ("IoTSDKFeature", "F/3"), ("IoTSDKMetricsVersion", "1")]


def test_tls_features_from_crtpy_context(pki):  # noqa: F811
    opts = crt_io.TlsContextOptions.create_client_with_mtls_from_path(str(pki.client_cert), str(pki.client_key))
    opts.min_tls_ver = crt_io.TlsVersion.TLSv1_2
    ctx = crt_io.ClientTlsContext(opts)
    assert _create_metrics_mqtt3(tls_ctx=ctx).metadata_entries[1].value == "F/3,G/A,I/A,K/D"
    assert "H/A" in _get_encoded_feature_list(options5(http_proxy_options=object()))


def test_classes_match_reference():
    ref = pytest.importorskip("awscrt.aws_iot_metrics")
    assert IOT_SDK_METRICS_FEATURE_VERSION == ref.IOT_SDK_METRICS_FEATURE_VERSION
    for ours, theirs in ((AWSIoTMetrics, ref.AWSIoTMetrics), (IoTMetricsMetadata, ref.IoTMetricsMetadata)):
        assert [(f.name, f.default) for f in dataclasses.fields(ours)] == \
            [(f.name, f.default) for f in dataclasses.fields(theirs)]
    assert AWSIoTMetrics() == AWSIoTMetrics("IoTDeviceSDK/Python", None)
    assert {m.name: m.value for m in metrics._MetricsFeatureId} == \
        {m.name: m.value for m in ref._MetricsFeatureId}


# -- differential: usernames captured from the reference's clients -----------------------------------
def _capture_connect(run: Callable[[int], None]) -> bytes:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    port = server.getsockname()[1]
    got: dict = {}

    def accept() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if _packet_complete(data):
                        break
            except OSError:
                pass
            got["data"] = data

    t = threading.Thread(target=accept)
    t.start()
    try:
        run(port)
    finally:
        t.join(10)
        server.close()
    return got.get("data", b"")


def _varint(data: bytes, i: int) -> tuple:
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _packet_complete(data: bytes) -> bool:
    try:
        length, i = _varint(data, 1)
    except IndexError:
        return False
    return len(data) >= i + length


def _username(packet: bytes) -> str | None:
    _, i = _varint(packet, 1)
    i += 2 + int.from_bytes(packet[i:i + 2], "big")
    level, flags = packet[i], packet[i + 1]
    i += 4
    if level == 5:
        n, i = _varint(packet, i)
        i += n
    i += 2 + int.from_bytes(packet[i:i + 2], "big")  # client id
    if flags & 0x04:  # will
        if level == 5:
            n, i = _varint(packet, i)
            i += n
        i += 2 + int.from_bytes(packet[i:i + 2], "big")
        i += 2 + int.from_bytes(packet[i:i + 2], "big")
    if not flags & 0x80:
        return None
    n = int.from_bytes(packet[i:i + 2], "big")
    return packet[i + 2:i + 2 + n].decode()


DIFF_USERNAMES = [None, "user", "user?a=b&Metadata=(k=v;x)", "u?SDK=mine"]


def test_same_username_as_reference_mqtt5():
    ref_mqtt5 = pytest.importorskip("awscrt.mqtt5")
    ref_io = pytest.importorskip("awscrt.io")
    ref_metrics = pytest.importorskip("awscrt.aws_iot_metrics")
    user = ref_metrics.AWSIoTMetrics(library_name="Lib/2", metadata_entries=[
        ref_metrics.IoTMetricsMetadata("IoTSDKMetricsVersion", "1"),
        ref_metrics.IoTMetricsMetadata("IoTSDKFeature", "B/C"),
        ref_metrics.IoTMetricsMetadata("Extra", "e")])
    variants = [{}, {"retry_jitter_mode": ref_io.ExponentialBackoffJitterMode.DECORRELATED,
                     "offline_queue_behavior":
                         ref_mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT},
                {"metrics": user}]
    for username in DIFF_USERNAMES:
        for extra in variants:
            opts_holder: list = []

            def run(port: int, username=username, extra=extra, opts_holder=opts_holder) -> None:
                done = threading.Event()
                opts = ref_mqtt5.ClientOptions(
                    host_name="127.0.0.1", port=port,
                    connect_options=ref_mqtt5.ConnectPacket(client_id="c", username=username),
                    on_lifecycle_event_connection_failure_fn=lambda d: done.set(),
                    on_lifecycle_event_disconnection_fn=lambda d: done.set(), **extra)
                client = ref_mqtt5.Client(opts)
                client.start()
                done.wait(5)
                client.stop()
                opts_holder.append(opts)

            theirs = _username(_capture_connect(run))
            # the reference's own options object, read by crtpy's functions
            assert _mqtt5_username(opts_holder[0]) == theirs, (username, extra)


def test_same_username_as_reference_mqtt3():
    ref_mqtt = pytest.importorskip("awscrt.mqtt")
    for username in DIFF_USERNAMES:
        def run(port: int, username=username) -> None:
            client = ref_mqtt.Client()
            connection = ref_mqtt.Connection(client=client, host_name="127.0.0.1", port=port,
                                             client_id="c", username=username)
            try:
                connection.connect().result(3)
            except Exception:  # noqa: BLE001, S110 - the capture server never answers
                pass

        theirs = _username(_capture_connect(run))
        assert _mqtt3_username(username) == theirs, username


