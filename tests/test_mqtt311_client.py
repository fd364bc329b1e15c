# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.mqtt (MQTT 3.1.1) against a private Mosquitto broker on loopback: transports
(TCP, TLS, mTLS, username/password, WebSocket via a relay, HTTP CONNECT proxy),
sessions, will, retained messages, wildcards, QoS 0/1, large payloads, many topics,
offline queue, callbacks that call back into the connection."""
from __future__ import annotations

import threading

import pytest
from conftest import require_binary
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events, new_topic

from crtpy import io, mqtt
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q0 = mqtt.QoS.AT_MOST_ONCE
Q1 = mqtt.QoS.AT_LEAST_ONCE


def make(port: int, ev: Events | None = None, *, client: mqtt.Client | None = None, host: str = "127.0.0.1",
         client_id: str | None = None, **kw) -> mqtt.Connection:
    kw.setdefault("reconnect_min_timeout_secs", 1)
    kw.setdefault("reconnect_max_timeout_secs", 2)
    cbs = ev.callbacks() if ev is not None else {}
    cbs.update(kw)
    return mqtt.Connection(client or mqtt.Client(), host, port, client_id or new_topic("cid").replace("/", "-"),
                           **cbs)


def tls_client(pki, *, cert: bool = False) -> mqtt.Client:
    opts = io.TlsContextOptions.create_client_with_mtls_from_path(pki.client_cert, pki.client_key) if cert \
        else io.TlsContextOptions()
    opts.override_default_trust_store_from_path(None, pki.ca_cert)
    return mqtt.Client(None, io.ClientTlsContext(opts))


def drop(conn: mqtt.Connection) -> None:
    """Cut the connection's transport abruptly (no DISCONNECT), as a network failure would."""
    d = conn._driver
    d.loop_thread.call_soon(lambda: d.transport.abort() if d.transport is not None else None)


def round_trip(conn: mqtt.Connection, qos=Q1, payload: bytes = b"hello") -> None:
    topic = new_topic()
    got = threading.Event()
    received = []

    def cb(topic, payload, dup, qos, retain, **kw):
        received.append((topic, payload, qos, retain))
        got.set()

    fut, pid = conn.subscribe(topic, qos, cb)
    assert fut.result(T) == {"packet_id": pid, "topic": topic, "qos": qos}
    pf, ppid = conn.publish(topic, payload, qos)
    assert pf.result(T) == {"packet_id": ppid}
    assert got.wait(T)
    assert received == [(topic, payload, qos, False)]


# -- connect / disconnect ----------------------------------------------------------------
def test_connect_round_trip_disconnect(mosquitto):
    ev = Events()
    conn = make(mosquitto.port, ev)
    assert conn.connect().result(T) == {"session_present": False}
    data = ev.wait("success")["data"]
    assert data.return_code == mqtt.ConnectReturnCode.ACCEPTED and data.session_present is False
    # a second connect while connected is refused
    with pytest.raises(AwsCrtError) as ei:
        conn.connect().result(T)
    assert ei.value.name == "AWS_ERROR_MQTT_ALREADY_CONNECTED"
    round_trip(conn, Q0)
    round_trip(conn, Q1)
    assert conn.disconnect().result(T) == {}
    ev.wait("closed")
    assert not ev.of("interrupted") and not ev.of("failure")
    with pytest.raises(AwsCrtError) as ei:
        conn.disconnect().result(T)
    assert ei.value.name == "AWS_ERROR_MQTT_NOT_CONNECTED"
    # connect again on the same object
    assert conn.connect().result(T) == {"session_present": False}
    round_trip(conn)
    conn.disconnect().result(T)


def test_connection_refused_reports_failure_and_does_not_retry(mosquitto_factory):
    from conftest import free_port

    ev = Events()
    conn = make(free_port(), ev)
    with pytest.raises(AwsCrtError) as ei:
        conn.connect().result(T)
    assert ei.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    assert ev.wait("failure")["data"].error.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    with pytest.raises(AwsCrtError):
        conn.disconnect().result(T)


def test_invalid_arguments(mosquitto):
    with pytest.raises(ValueError):
        mqtt.Connection(mqtt.Client(), "h", 1, "c", reconnect_min_timeout_secs=10, reconnect_max_timeout_secs=5)
    with pytest.raises(ValueError):
        mqtt.Connection(mqtt.Client(), "h", 1, "c", keep_alive_secs=1, ping_timeout_ms=1000)
    with pytest.raises(TypeError):
        mqtt.Connection(mqtt.Client(), "h", 1, "c", will="no")
    conn = make(mosquitto.port)
    conn.connect().result(T)
    for bad in ("", "a/#/b", "a+/b"):
        f, pid = conn.subscribe(bad, Q1)
        assert pid == 0 and f.exception(T).name == "AWS_ERROR_MQTT_INVALID_TOPIC"
    for bad in ("", "a/+", "a/#"):
        f, pid = conn.publish(bad, b"x", Q1)
        assert f.exception(T).name == "AWS_ERROR_MQTT_INVALID_TOPIC"
    f, _ = conn.publish("a/b", b"x", mqtt.QoS.EXACTLY_ONCE)
    assert isinstance(f.exception(T), ValueError)
    f, _ = conn.publish("a/b", 12, Q1)
    assert isinstance(f.exception(T), TypeError)
    conn.disconnect().result(T)


# -- messaging ---------------------------------------------------------------------------
def test_wildcards_on_message_and_old_callback_signature(mosquitto):
    conn = make(mosquitto.port)
    conn.connect().result(T)
    base = new_topic()
    plus, hash_, any_ = [], [], []
    done = threading.Event()

    def old_style(topic, payload):  # the two-argument form is still accepted
        plus.append((topic, payload))

    def on_any(topic, payload, **kw):
        any_.append(topic)
        if len(any_) == 3:
            done.set()

    conn.on_message(on_any)
    conn.subscribe(f"{base}/+/x", Q1, old_style)[0].result(T)
    conn.subscribe(f"{base}/#", Q0, lambda topic, payload, **kw: hash_.append((topic, kw["qos"])))[0].result(T)
    for t in ("a/x", "b/x", "a/y"):
        conn.publish(f"{base}/{t}", t.encode(), Q1)[0].result(T)
    assert done.wait(T)  # on_message sees every message once; each matching subscription's callback runs too
    assert sorted(plus) == [(f"{base}/a/x", b"a/x"), (f"{base}/b/x", b"b/x")]
    # Mosquitto sends one copy per client (at the highest QoS of the matching subscriptions)
    assert sorted(hash_) == [(f"{base}/a/x", Q1), (f"{base}/a/y", Q0), (f"{base}/b/x", Q1)]
    # unsubscribe: no more messages for that filter
    uf, upid = conn.unsubscribe(f"{base}/#")
    assert uf.result(T) == {"packet_id": upid}
    conn.on_message(None)
    conn.publish(f"{base}/c/x", b"c", Q1)[0].result(T)
    done2 = threading.Event()
    conn.subscribe(f"{base}/sync", Q1, lambda **kw: done2.set())[0].result(T)
    conn.publish(f"{base}/sync", b"", Q1)[0].result(T)
    assert done2.wait(T)
    assert len(hash_) == 3 and len(plus) == 3
    conn.disconnect().result(T)


def test_retained_message(mosquitto):
    conn = make(mosquitto.port)
    conn.connect().result(T)
    topic = new_topic()
    conn.publish(topic, b"kept", Q1, retain=True)[0].result(T)
    got = []
    ev = threading.Event()
    conn.subscribe(topic, Q1, lambda topic, payload, dup, qos, retain, **kw: (got.append((payload, retain)), ev.set()))
    assert ev.wait(T)
    assert got == [(b"kept", True)]
    conn.publish(topic, b"", Q1, retain=True)[0].result(T)  # clear it
    conn.disconnect().result(T)


def test_large_payload_and_many_topics(mosquitto):
    conn = make(mosquitto.port)
    conn.connect().result(T)
    big = bytes(range(256)) * 4096  # 1 MiB
    round_trip(conn, Q1, big)
    base = new_topic()
    n = 200
    lock = threading.Lock()
    seen: set[str] = set()
    all_in = threading.Event()

    def cb(topic, payload, **kw):
        with lock:
            seen.add(topic)
            if len(seen) == n:
                all_in.set()

    futs = [conn.subscribe(f"{base}/{i}", Q1, cb)[0] for i in range(n)]
    for f in futs:
        f.result(T)
    pubs = [conn.publish(f"{base}/{i}", str(i), Q1)[0] for i in range(n)]
    for f in pubs:
        f.result(T)
    assert all_in.wait(T)
    stats = conn.get_stats()
    assert stats.incomplete_operation_count == 0 and stats.unacked_operation_count == 0
    conn.disconnect().result(T)


def test_publish_and_subscribe_from_inside_a_message_callback(mosquitto):
    conn = make(mosquitto.port)
    conn.connect().result(T)
    a, b = new_topic(), new_topic()
    results = []
    finished = threading.Event()

    def on_b(topic, payload, **kw):
        finished.set()

    def on_a(topic, payload, **kw):
        # blocking on futures inside a callback must not deadlock the connection
        results.append(conn.subscribe(b, Q1, on_b)[0].result(T))
        results.append(conn.publish(b, b"from callback", Q1)[0].result(T))

    conn.subscribe(a, Q1, on_a)[0].result(T)
    conn.publish(a, b"go", Q1)[0].result(T)
    assert finished.wait(T)
    assert results[0]["topic"] == b and "packet_id" in results[1]
    conn.disconnect().result(T)


# -- sessions, will, offline queue -------------------------------------------------------
def test_persistent_session_present_and_queued_messages(mosquitto):
    cid = new_topic("persist").replace("/", "-")
    topic = new_topic()
    conn = make(mosquitto.port, client_id=cid, clean_session=False)
    assert conn.connect().result(T) == {"session_present": False}
    conn.subscribe(topic, Q1)[0].result(T)
    conn.disconnect().result(T)
    other = make(mosquitto.port)
    other.connect().result(T)
    other.publish(topic, b"while away", Q1)[0].result(T)
    other.disconnect().result(T)
    got = threading.Event()
    msgs = []
    conn.on_message(lambda topic, payload, **kw: (msgs.append(payload), got.set()))
    assert conn.connect().result(T) == {"session_present": True}
    assert got.wait(T) and msgs == [b"while away"]
    conn.disconnect().result(T)
    # a clean session never resumes
    conn.clean_session = True
    assert conn.connect().result(T) == {"session_present": False}
    conn.disconnect().result(T)


def test_will_published_on_unclean_drop_and_auto_reconnect(mosquitto):
    will_topic = new_topic()
    watcher = make(mosquitto.port)
    watcher.connect().result(T)
    wills = []
    got = threading.Event()
    watcher.subscribe(will_topic, Q1, lambda topic, payload, **kw: (wills.append(payload), got.set()))[0].result(T)
    ev = Events()
    conn = make(mosquitto.port, ev, will=mqtt.Will(will_topic, Q1, b"gone", False))
    conn.connect().result(T)
    drop(conn)
    assert ev.wait("interrupted")["error"].name
    assert got.wait(T) and wills == [b"gone"]
    resumed = ev.wait("resumed")
    assert resumed["return_code"] == mqtt.ConnectReturnCode.ACCEPTED and resumed["session_present"] is False
    assert len(ev.of("success")) == 2
    round_trip(conn)
    # a clean DISCONNECT does not publish the will
    conn.disconnect().result(T)
    ev.wait("closed")
    sync = new_topic()
    s_got = threading.Event()
    watcher.subscribe(sync, Q1, lambda **kw: s_got.set())[0].result(T)
    watcher.publish(sync, b"", Q1)[0].result(T)
    assert s_got.wait(T) and wills == [b"gone"]
    watcher.disconnect().result(T)


def test_offline_queue_and_resubscribe_after_broker_restart(mosquitto):
    ev = Events()
    topic = new_topic()
    conn = make(mosquitto.port, ev, clean_session=False)
    conn.connect().result(T)
    msgs = []
    got = threading.Event()
    conn.subscribe(topic, Q1, lambda topic, payload, **kw: (msgs.append(payload), got.set()))[0].result(T)
    mosquitto.kill()
    ev.wait("interrupted")
    # made while offline: QoS 1 is queued, QoS 0 fails at once
    f1, pid = conn.publish(topic, b"queued", Q1)
    f0, _ = conn.publish(topic, b"dropped", Q0)
    assert f0.exception(T).name == "AWS_ERROR_MQTT_NOT_CONNECTED"
    stats = conn.get_stats()
    assert stats.incomplete_operation_count == 1 and stats.unacked_operation_count == 0
    assert not f1.done()
    resub = []

    def on_resumed(**kw):
        if not kw["session_present"]:  # the broker lost its state: subscribe again
            resub.append(conn.resubscribe_existing_topics()[0].result(T))

    conn._on_connection_resumed_cb = on_resumed
    mosquitto.start()
    assert f1.result(3 * T) == {"packet_id": pid}
    deadline = threading.Event()
    for _ in range(100):
        if resub:
            break
        deadline.wait(0.1)
    assert resub and resub[0]["topics"] == [(topic, Q1)]
    conn.publish(topic, b"after", Q1)[0].result(T)
    assert got.wait(T)
    ok = threading.Event()
    for _ in range(100):
        if b"after" in msgs:
            break
        ok.wait(0.05)
    assert b"after" in msgs
    conn.disconnect().result(T)


def test_clean_session_reconnect_cancels_offline_operations(mosquitto):
    ev = Events()
    conn = make(mosquitto.port, ev, clean_session=True)
    conn.connect().result(T)
    mosquitto.kill()
    ev.wait("interrupted")
    f, _ = conn.publish(new_topic(), b"old session", Q1)
    mosquitto.start()
    with pytest.raises(AwsCrtError) as ei:
        f.result(3 * T)
    assert ei.value.name == "AWS_ERROR_MQTT_CANCELLED_FOR_CLEAN_SESSION"
    ev.wait("resumed")
    round_trip(conn)
    conn.disconnect().result(T)


# -- transports --------------------------------------------------------------------------
def test_username_password(mosquitto_factory):
    broker = mosquitto_factory(users={"alice": "s3cret"})
    conn = make(broker.auth_port, username="alice", password="s3cret", disable_metrics=True)
    conn.connect().result(T)
    round_trip(conn)
    conn.disconnect().result(T)
    ev = Events()
    bad = make(broker.auth_port, ev, username="alice", password="wrong", disable_metrics=True)
    with pytest.raises(AwsCrtError) as ei:
        bad.connect().result(T)
    assert ei.value.name == "AWS_ERROR_MQTT_PROTOCOL_ERROR" and "return code 5" in str(ei.value)
    assert ev.wait("failure")["data"].error.name == "AWS_ERROR_MQTT_PROTOCOL_ERROR"


def test_tls_and_mtls(mosquitto_factory, pki):
    broker = mosquitto_factory(tls=True, pki=pki)
    conn = make(broker.tls_port, client=tls_client(pki), host="localhost")
    conn.connect().result(T)
    round_trip(conn)
    conn.disconnect().result(T)
    # an untrusted server certificate fails
    untrusted = make(broker.tls_port, client=mqtt.Client(None, io.ClientTlsContext(io.TlsContextOptions())),
                     host="localhost")
    with pytest.raises(AwsCrtError) as ei:
        untrusted.connect().result(T)
    assert "TLS" in ei.value.name
    mbroker = mosquitto_factory(tls=True, pki=pki, require_client_cert=True)
    conn = make(mbroker.tls_port, client=tls_client(pki, cert=True), host="localhost")
    conn.connect().result(T)
    round_trip(conn)
    conn.disconnect().result(T)
    nocert = make(mbroker.tls_port, client=tls_client(pki), host="localhost")
    assert nocert.connect().exception(T) is not None  # the broker refuses a client without a certificate


@pytest.mark.parametrize("tls", [False, True])
def test_websocket_via_relay(mosquitto, pki, tls):
    import ssl

    from helpers.ws_mqtt_relay import start_relay

    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
    seen = []

    def transform(transform_args, **kw):
        assert isinstance(transform_args.mqtt_connection, mqtt.Connection)
        transform_args.http_request.headers.add("x-signed", "yes")
        seen.append(transform_args.http_request.path)
        transform_args.set_done()

    with start_relay("127.0.0.1", mosquitto.port, ssl_context=ctx) as relay:
        conn = make(relay.port, client=tls_client(pki) if tls else None, host="localhost" if tls else "127.0.0.1",
                    use_websockets=True, websocket_handshake_transform=transform)
        conn.connect().result(T)
        round_trip(conn)
        round_trip(conn, Q1, b"w" * 300_000)
        conn.disconnect().result(T)
        assert seen == ["/mqtt"] and relay.subprotocols == ["mqtt"]

        def failing(transform_args, **kw):
            raise RuntimeError("no credentials")

        bad = make(relay.port, client=tls_client(pki) if tls else None, host="localhost" if tls else "127.0.0.1",
                   use_websockets=True, websocket_handshake_transform=failing)
        with pytest.raises(RuntimeError, match="no credentials"):
            bad.connect().result(T)


def test_tls_through_tinyproxy(mosquitto_factory, pki, tmp_path):
    from conftest import free_port
    from helpers.http_servers import Tinyproxy

    from crtpy.http import HttpProxyOptions

    broker = mosquitto_factory(tls=True, pki=pki)
    proxy = Tinyproxy(require_binary("tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"),
                      str(tmp_path), free_port())
    try:
        conn = make(broker.tls_port, client=tls_client(pki), host="localhost",
                    proxy_options=HttpProxyOptions("127.0.0.1", proxy.port))
        conn.connect().result(T)
        round_trip(conn)
        conn.disconnect().result(T)
    finally:
        proxy.stop()


@pytest.mark.parametrize("websocket", [False, True])
def test_through_tinyproxy(mosquitto, tmp_path, websocket):
    from conftest import free_port
    from helpers.http_servers import Tinyproxy
    from helpers.ws_mqtt_relay import start_relay

    from crtpy.http import HttpProxyOptions

    proxy = Tinyproxy(require_binary("tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"),
                      str(tmp_path), free_port())
    try:
        if websocket:
            with start_relay("127.0.0.1", mosquitto.port) as relay:
                conn = make(relay.port, use_websockets=True,
                            websocket_proxy_options=HttpProxyOptions("127.0.0.1", proxy.port))
                conn.connect().result(T)
                round_trip(conn)
                conn.disconnect().result(T)
                assert relay.connections == 1
        else:
            conn = make(mosquitto.port, proxy_options=HttpProxyOptions("127.0.0.1", proxy.port))
            conn.connect().result(T)
            round_trip(conn)
            conn.disconnect().result(T)
        with open(proxy.log) as f:
            assert "CONNECT" in f.read()
    finally:
        proxy.stop()


def test_get_stats_counts_queued_operations(mosquitto):
    conn = make(mosquitto.port)
    # never connected: operations wait in the queue
    futs = [conn.publish("a/b", b"xyz", Q1)[0] for _ in range(3)]
    s = conn.get_stats()
    assert s.incomplete_operation_count == 3 and s.unacked_operation_count == 0
    assert s.incomplete_operation_size == 3 * (2 + 3 + 2 + 3)
    conn.connect().result(T)
    for f in futs:
        f.result(T)
    assert conn.get_stats() == mqtt.OperationStatisticsData(0, 0, 0, 0)
    conn.disconnect().result(T)
