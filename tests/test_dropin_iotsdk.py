"""Drop-in: the AWS IoT Device SDK v2 (``awsiot``, package awsiotsdk, installed with
``pip install --no-deps awsiotsdk`` because it pins an awscrt version) on crtpy through
``install_as_awscrt``: its MQTT 5 and MQTT 3.1.1 builders (direct mTLS from paths and from
bytes, WebSocket with a custom handshake and with SigV4 signing, custom CA) against a local
Mosquitto, and its request-response Shadow client (``IotShadowClientV2``) against a
Device Shadow stand-in, over both protocol clients.
"""
from __future__ import annotations

import json
import ssl

import pytest
from helpers.certs import pki  # noqa: F401
from helpers.dropin_iot import ShadowResponder
from helpers.dropin_run import reference, run_script
from helpers.mosquitto import mosquitto_factory  # noqa: F401
from helpers.ws_mqtt_relay import start_relay

pytest.importorskip("awsiot.iotshadow", reason="awsiotsdk not installed (pip install --no-deps awsiotsdk)")

SHADOW = {"color": "blue", "size": 3}


@pytest.fixture(scope="module")
def iot(tmp_path_factory, pki):  # noqa: F811
    from helpers.mosquitto import Mosquitto

    broker = Mosquitto(str(tmp_path_factory.mktemp("iot-mosquitto")), tls=True, pki=pki,
                       require_client_cert=True).start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    relay = start_relay("127.0.0.1", broker.port, ssl_context=ctx)
    responder = ShadowResponder(broker.port, {"dropin-thing-5": SHADOW, "dropin-thing-3": SHADOW})
    try:
        cfg = {"tls_port": broker.tls_port, "wss_port": relay.port, "ca": str(pki.ca_cert),
               "other_ca": str(pki.other_ca_cert), "cert": str(pki.client_cert), "key": str(pki.client_key)}
        out = run_script("dropin_iot_script.py", "crtpy", json.dumps(cfg), timeout=90)
        out["relay_paths"] = list(relay.paths)
        out["wss_port"] = relay.port
        out["relay_subprotocols"] = list(relay.subprotocols)
        out["shadow_requests"] = [(t, sorted(r)) for t, r in responder.requests]
        yield out
    finally:
        responder.close()
        relay.stop()
        broker.stop()


def _ok(iot: dict, name: str) -> dict:
    stage = iot[name]
    assert "error" not in stage, f"{name}: {stage.get('error')}\n{stage.get('trace')}"
    return stage


def _reference_presign(path: str, key: str, token: str | None, region: str, port: int) -> str:
    """Presign the WebSocket handshake again with the reference awscrt, at the date and with
    the signed headers the crtpy-signed ``path`` names."""
    import datetime
    from urllib.parse import parse_qs, urlsplit

    auth = reference("awscrt.auth")
    http = reference("awscrt.http")
    q = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
    date = datetime.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    values = {"host": f"127.0.0.1:{port}", "connection": "Upgrade"}
    headers = http.HttpHeaders([(h, values[h]) for h in q["X-Amz-SignedHeaders"].split(";")])
    req = http.HttpRequest("GET", "/mqtt", headers)
    config = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4, signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=auth.AwsCredentialsProvider.new_static(key, "dropin-secret", token),
        region=region, service="iotdevicegateway", omit_session_token=True, date=date)
    auth.aws_sign_request(req, config).result(10)
    return req.path


def test_awscrt_is_crtpy(iot):
    assert iot["awscrt_module"].startswith("crtpy") and iot["mqtt_module"].startswith("crtpy")


@pytest.mark.parametrize("name", ["m5_mtls_path", "m5_mtls_bytes", "m5_ws_custom", "m5_ws_sigv4"])
def test_mqtt5_builder_connects_and_pubsubs(iot, name):
    stage = _ok(iot, name)
    topic = {"m5_mtls_path": "dropin/m5path", "m5_mtls_bytes": "dropin/m5bytes",
             "m5_ws_custom": "dropin/m5ws", "m5_ws_sigv4": "dropin/m5sig"}[name]
    assert stage["client_module"].startswith("crtpy")
    assert stage["suback"] == [1] and stage["puback"] == 0
    assert stage["messages"] == [[topic + "/x", "hello " + topic]]


def test_mqtt5_websocket_handshakes(iot):
    assert _ok(iot, "m5_ws_custom")["transform_calls"] == ["/mqtt"]
    assert _ok(iot, "m3_ws_custom")["transform_calls"] == ["/mqtt"]
    assert len(iot["relay_paths"]) == 4 and set(iot["relay_subprotocols"]) == {"mqtt"}
    # the SigV4 builders presigned their handshakes with crtpy's signer
    signed = sorted(p for p in iot["relay_paths"] if "X-Amz-Signature=" in p)
    assert len(signed) == 2
    m5 = next(p for p in signed if "X-Amz-Credential=AKIDDROPIN%2F" in p)
    m3 = next(p for p in signed if "X-Amz-Credential=AKIDDROPIN3%2F" in p)
    assert "%2Fus-east-1%2Fiotdevicegateway%2Faws4_request" in m5
    assert "%2Feu-west-1%2Fiotdevicegateway%2Faws4_request" in m3
    # Same signatures as the reference signer gives for that handshake (IoT leaves the
    # session token out of the canonical request, but sends it)
    assert "X-Amz-Security-Token=session-token&" in m3
    for path, (key, token, region) in ((m5, ("AKIDDROPIN", None, "us-east-1")),
                                       (m3, ("AKIDDROPIN3", "session-token", "eu-west-1"))):
        assert _reference_presign(path, key, token, region, iot["wss_port"]) == path


@pytest.mark.parametrize("name", ["m3_mtls_path", "m3_ws_custom", "m3_ws_sigv4"])
def test_mqtt311_builder_connects_and_pubsubs(iot, name):
    stage = _ok(iot, name)
    topic = {"m3_mtls_path": "dropin/m3path", "m3_ws_custom": "dropin/m3ws", "m3_ws_sigv4": "dropin/m3sig"}[name]
    assert stage["connection_module"].startswith("crtpy")
    assert stage["session_present"] is False and stage["granted"] == 1
    assert stage["message"] == [topic + "/x", "hello " + topic]


def test_custom_ca_is_enforced(iot):
    m5, m3 = _ok(iot, "m5_wrong_ca"), _ok(iot, "m3_wrong_ca")
    assert m5["connected"] is False and m3["connected"] is False
    assert "TLS" in m5["error_name"] or "CERT" in m5["error_name"], m5
    assert "TLS" in m3["error_name"] or "CERT" in m3["error_name"], m3


@pytest.mark.parametrize("name", ["shadow_mqtt5", "shadow_mqtt311"])
def test_shadow_v2_client_on_request_response(iot, name):
    stage = _ok(iot, name)
    assert stage["rr_module"].startswith("crtpy")
    assert stage["get"]["reported"] == SHADOW and stage["get"]["version"] >= 1
    assert stage["get"]["client_token"]  # the responder echoed the SDK's correlation token
    assert stage["get_missing"] == {"code": 404, "inner": None}
    thing = "dropin-thing-5" if name == "shadow_mqtt5" else "dropin-thing-3"
    asked = [t for t, keys in iot["shadow_requests"] if thing in t]
    assert asked == [f"$aws/things/{thing}/shadow/get", f"$aws/things/{thing}/shadow/update"]
    assert all("clientToken" in keys for _, keys in iot["shadow_requests"])
    assert stage["update"]["client_token"] and stage["update"]["version"] == stage["stream_event"]["version"]
    assert stage["stream_event"]["current"]["color"] == "green"
    assert stage["stream_event"]["previous"] == SHADOW
    assert stage["update"]["version"] == stage["get"]["version"] + 1
