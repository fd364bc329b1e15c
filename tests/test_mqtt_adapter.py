# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.mqtt5.Client.new_connection(): the MQTT 3.1.1 API on top of an MQTT 5 client,
against a local Mosquitto, with differential checks against the reference adapter."""
from __future__ import annotations

import threading

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events, new_topic

import crtpy
from crtpy import mqtt, mqtt5
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q0 = mqtt.QoS.AT_MOST_ONCE
Q1 = mqtt.QoS.AT_LEAST_ONCE


class Rec5:
    """MQTT 5 lifecycle events of the client under the adapter."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.kinds: list[str] = []

    def add(self, kind: str) -> None:
        with self.cond:
            self.kinds.append(kind)
            self.cond.notify_all()

    def options(self) -> dict:
        return {"on_lifecycle_event_stopped_fn": lambda d: self.add("stopped"),
                    "on_lifecycle_event_connection_success_fn": lambda d: self.add("success"),
                    "on_lifecycle_event_disconnection_fn": lambda d: self.add("disconnection")}

    def wait(self, kind: str, count: int = 1) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.kinds.count(kind) >= count, T), self.kinds


def make(lib, broker, ev: Events, rec5: Rec5 | None = None, client_id: str | None = None, **opts):
    connect = lib.mqtt5.ConnectPacket(client_id=client_id or new_topic("ad").replace("/", "-"),
                                      keep_alive_interval_sec=opts.pop("keep_alive", 30),
                                      session_expiry_interval_sec=opts.pop("session_expiry", None))
    options = lib.mqtt5.ClientOptions(broker.host, broker.port, connect_options=connect,
                                      min_reconnect_delay_ms=200, max_reconnect_delay_ms=500,
                                      **(rec5.options() if rec5 else {}), **opts)
    client = lib.mqtt5.Client(options)
    return client, client.new_connection(**ev.callbacks())


class _Lib:
    def __init__(self, pkg) -> None:
        import importlib

        self.mqtt5 = importlib.import_module(pkg + ".mqtt5")
        self.mqtt = importlib.import_module(pkg + ".mqtt")


CRT = _Lib("crtpy")


def test_new_connection_attributes_follow_the_client_options():
    c5 = mqtt5.Client(mqtt5.ClientOptions(
        "127.0.0.1", 1883, connect_options=mqtt5.ConnectPacket(client_id="cid", keep_alive_interval_sec=30),
        min_reconnect_delay_ms=1000, max_reconnect_delay_ms=2000, ping_timeout_ms=2500, ack_timeout_sec=7,
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS))
    conn = c5.new_connection()
    assert isinstance(conn, mqtt.Connection) and conn.client is c5
    got = (conn.client_id, conn.host_name, conn.port, conn.clean_session, conn.keep_alive_secs,
           conn.ping_timeout_ms, conn.reconnect_min_timeout_secs, conn.reconnect_max_timeout_secs,
           conn.protocol_operation_timeout_ms)
    assert got == ("cid", "127.0.0.1", 1883, False, 30, 2500, 1000, 2000, 7000)
    d = mqtt5.Client(mqtt5.ClientOptions("127.0.0.1", 1883)).new_connection()
    assert (d.client_id, d.clean_session, d.keep_alive_secs, d.ping_timeout_ms, d.reconnect_min_timeout_secs,
            d.reconnect_max_timeout_secs, d.protocol_operation_timeout_ms) == ("", True, 1200, 3000, 5, 60, 0)
    # also reachable through the Connection constructor
    conn2 = mqtt.Connection(c5, "127.0.0.1", 1883, "x")
    assert conn2.client is c5
    with pytest.raises(TypeError):
        mqtt.Connection(object(), "127.0.0.1", 1883, "x")


def test_connect_subscribe_publish_unsubscribe_disconnect(mosquitto):
    ev, rec5 = Events(), Rec5()
    _c5, conn = make(CRT, mosquitto, ev, rec5)
    assert conn.connect().result(T) == {"session_present": False}
    assert ev.wait("success")["data"].session_present is False
    with pytest.raises(AwsCrtError) as ei:
        conn.connect().result(T)
    assert ei.value.name == "AWS_ERROR_MQTT_ALREADY_CONNECTED"
    topic = new_topic("ad")
    got: list = []
    done = threading.Event()

    def on_sub(topic, payload, dup, qos, retain, **kw):
        got.append((topic, payload, qos))
        if len(got) == 2:
            done.set()

    any_msgs = Events()
    conn.on_message(any_msgs.on_message)
    f, pid = conn.subscribe(f"{topic}/+", Q1, on_sub)
    assert f.result(T) == {"packet_id": pid, "topic": f"{topic}/+", "qos": Q1}
    f0, pid0 = conn.publish(f"{topic}/a", b"zero", Q0)
    assert f0.result(T) == {"packet_id": pid0}
    f1, pid1 = conn.publish(f"{topic}/b", "one", Q1)
    assert f1.result(T) == {"packet_id": pid1}
    assert len({pid, pid0, pid1}) == 3 and all(p > 0 for p in (pid, pid0, pid1))
    assert done.wait(T)
    assert sorted(got) == [(f"{topic}/a", b"zero", Q0), (f"{topic}/b", b"one", Q1)]
    assert len(any_msgs.wait_messages(2)) == 2
    # resubscribe lists the subscriptions with their granted QoS
    f, pid = conn.resubscribe_existing_topics()
    assert f.result(T) == {"packet_id": pid, "topics": [(f"{topic}/+", Q1)]}
    f, pid = conn.unsubscribe(f"{topic}/+")
    assert f.result(T) == {"packet_id": pid}
    assert conn.resubscribe_existing_topics()[0].result(T) == {"packet_id": None, "topics": []}
    stats = conn.get_stats()
    assert stats.incomplete_operation_count == 0 and stats.unacked_operation_count == 0
    assert conn.disconnect().result(T) == {}
    ev.wait("closed")
    rec5.wait("stopped")
    assert not ev.of("interrupted") and not ev.of("failure")
    assert conn.disconnect().result(T) == {}  # already disconnected: still {}


def test_bad_input_goes_to_the_future(mosquitto):
    ev = Events()
    _c5, conn = make(CRT, mosquitto, ev)
    for fut, pid in (conn.subscribe("a/#/b", Q0), conn.publish("a/+", b"", Q0), conn.unsubscribe("")):
        assert pid == 0
        assert fut.exception(T).name == "AWS_ERROR_MQTT_INVALID_TOPIC"
    fut, pid = conn.subscribe("a/b", mqtt.QoS.EXACTLY_ONCE)
    assert fut.exception(T).name == "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION"
    fut, pid = conn.publish("a/b", b"", mqtt.QoS.EXACTLY_ONCE)
    assert isinstance(fut.exception(T), ValueError)


def test_offline_queue_and_connect_failure(mosquitto):
    ev, rec5 = Events(), Rec5()
    _c5, conn = make(CRT, mosquitto, ev, rec5)
    # QoS 0 while offline fails with the MQTT 5 offline policy; QoS 1 and SUBSCRIBE wait
    f0, _ = conn.publish("off/a", b"x", Q0)
    assert f0.exception(T).name == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    topic = new_topic("off")
    fs, _ = conn.subscribe(topic, Q1)
    f1, pid1 = conn.publish(topic, b"queued", Q1)
    assert not f1.done() and not fs.done()
    assert conn.get_stats().incomplete_operation_count == 2
    conn.on_message(ev.on_message)
    conn.connect().result(T)
    assert fs.result(T)["qos"] == Q1
    assert f1.result(T) == {"packet_id": pid1}
    assert ev.wait_messages(1)[0]["payload"] == b"queued"
    conn.disconnect().result(T)
    # a first connect that fails reports the error and the failure callback
    mosquitto.stop()
    with pytest.raises(AwsCrtError) as ei:
        conn.connect().result(T)
    assert ei.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    assert ev.wait("failure")["data"].error.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    rec5.wait("stopped", 2)  # the adapter started the client, so it stops it again
    assert conn.disconnect().result(T) == {}


def test_interrupted_resumed_across_broker_restart(mosquitto):
    ev, rec5 = Events(), Rec5()
    _c5, conn = make(CRT, mosquitto, ev, rec5)
    conn.connect().result(T)
    topic = new_topic("rs")
    conn.subscribe(topic, Q1, ev.on_message)[0].result(T)
    mosquitto.stop()
    err = ev.wait("interrupted")["error"]
    assert isinstance(err, AwsCrtError)
    f, _ = conn.publish(topic, b"after", Q1)  # queued while offline
    mosquitto.start()
    resumed = ev.wait("resumed")
    assert resumed["return_code"] == mqtt.ConnectReturnCode.ACCEPTED and resumed["session_present"] is False
    assert len(ev.of("success")) == 2
    # no session: subscribe again, then the queued publish gets through
    assert conn.resubscribe_existing_topics()[0].result(T)["topics"] == [(topic, Q1)]
    f.result(T)
    conn.publish(topic, b"again", Q1)[0].result(T)
    assert b"again" in [m["payload"] for m in ev.wait_messages(1)]
    conn.disconnect().result(T)
    ev.wait("closed")


def test_connect_resets_a_running_client_and_stop_closes_the_adapter(mosquitto):
    ev, rec5 = Events(), Rec5()
    c5, conn = make(CRT, mosquitto, ev, rec5)
    c5.start()
    rec5.wait("success")
    assert conn.connect().result(T) == {"session_present": False}
    rec5.wait("success", 2)  # reconnected so the adapter's settings apply
    assert not ev.of("interrupted")
    c5.stop()
    ev.wait("interrupted")
    ev.wait("closed")
    # two adapters on one client: one's disconnect closes both
    ev2 = Events()
    conn2 = c5.new_connection(**ev2.callbacks())
    conn.connect().result(T)
    assert conn2.disconnect().result(T) == {}
    ev2.wait("closed")
    ev.wait("closed", 2)


def test_settings_of_the_connection_apply_at_connect(mosquitto):
    ev = Events()
    _c5, conn = make(CRT, mosquitto, ev, client_id="first-id")
    conn.client_id = "changed-id"
    conn.keep_alive_secs = 77
    conn.connect().result(T)
    conn.publish("x/y", b"", Q1)[0].result(T)
    conn.disconnect().result(T)
    log = mosquitto.log()
    assert "as changed-id" in log and "k77" in log


def test_same_results_as_reference(mosquitto):
    """The same script through crtpy's and the reference's adapter gives the same
    results and callbacks."""
    awscrt = pytest.importorskip("awscrt")  # noqa: F841
    outs = []
    for pkg in ("awscrt", "crtpy"):
        lib = _Lib(pkg)
        ev = Events()
        c5, conn = make(lib, mosquitto, ev)
        out: list = []
        f0, _ = conn.publish("d/a", b"x", lib.mqtt.QoS.AT_MOST_ONCE)
        out.append(type(f0.exception(T)).__mro__[0].__name__ in ("AwsCrtError",))
        out.append(f0.exception(T).name)
        out.append(conn.connect().result(T))
        topic = new_topic("diff")
        r = conn.subscribe(topic, lib.mqtt.QoS.AT_LEAST_ONCE, ev.on_message)
        res = r[0].result(T)
        out.append((res["packet_id"] == r[1], res["topic"] == topic, int(res["qos"])))
        r = conn.publish(topic, b"p", lib.mqtt.QoS.AT_LEAST_ONCE)
        out.append(r[0].result(T) == {"packet_id": r[1]})
        m = ev.wait_messages(1)[0]
        out.append((m["payload"], m["dup"], int(m["qos"]), m["retain"]))
        r = conn.unsubscribe("never/subscribed")
        out.append(r[0].result(T) == {"packet_id": r[1]})
        fut, pid = conn.subscribe("bad/#/x", lib.mqtt.QoS.AT_MOST_ONCE)
        out.append((pid, "AWS_ERROR_MQTT_INVALID_TOPIC" in str(fut.exception(T))))
        fut, pid = conn.subscribe("q/2", lib.mqtt.QoS.EXACTLY_ONCE)
        out.append((pid, "AWS_ERROR_MQTT5_SUBSCRIBE_OPTIONS_VALIDATION" in str(fut.exception(T))))
        out.append(conn.disconnect().result(T))
        ev.wait("closed")
        out.append(conn.disconnect().result(T))
        out.append(sorted({k for k, _ in ev.events}))
        outs.append(out)
        del conn, c5
    assert outs[0] == outs[1]


def test_qos_to_mqtt3_and_back():
    for q in mqtt5.QoS:
        assert q.to_mqtt3() is mqtt.QoS(int(q))
        assert q.to_mqtt3().to_mqtt5() is q


def test_collected_adapter_and_client_leave_nothing_running(mosquitto):
    ev = Events()
    c5, conn = make(CRT, mosquitto, ev)
    conn.connect().result(T)
    del conn, c5
    import gc

    gc.collect()
    assert crtpy  # the leak_check fixture verifies that nothing stays alive


def test_operations_from_inside_a_message_callback(mosquitto):
    """Publishing and subscribing from a message callback works (callbacks run on
    worker threads, never on the network thread) and does not deadlock."""
    ev = Events()
    _c5, conn = make(CRT, mosquitto, ev)
    conn.connect().result(T)
    topic = new_topic("re")
    echoed = threading.Event()
    results: list = []

    def on_ping(topic, payload, **kw):
        f, _ = conn.subscribe(f"{topic}/echo", Q1, lambda topic, payload, **kw: echoed.set())
        results.append(f.result(T))  # waiting here must not block the network thread
        conn.publish(f"{topic}/echo", b"pong", Q1)[0].result(T)

    conn.subscribe(topic, Q1, on_ping)[0].result(T)
    conn.publish(topic, b"ping", Q1)[0].result(T)
    assert echoed.wait(T)
    assert results[0]["topic"] == f"{topic}/echo"
    conn.disconnect().result(T)


def test_restart_callbacks_same_as_reference(mosquitto):
    """Across a broker restart both adapters report interrupted (same error name),
    then success and resumed, and keep working."""
    pytest.importorskip("awscrt")
    outs = []
    for pkg in ("awscrt", "crtpy"):
        lib = _Lib(pkg)
        ev = Events()
        _c5, conn = make(lib, mosquitto, ev)
        conn.connect().result(T)
        mosquitto.stop()
        err = ev.wait("interrupted")["error"]
        mosquitto.start()
        resumed = ev.wait("resumed")
        ev.wait("success", 2)
        r = conn.publish("d/r", b"x", lib.mqtt.QoS.AT_LEAST_ONCE)
        ok = r[0].result(T) == {"packet_id": r[1]}
        conn.disconnect().result(T)
        ev.wait("closed")
        outs.append((err.name, int(resumed["return_code"]), resumed["session_present"], ok,
                     [k for k, _ in ev.events if k != "failure"]))
        del conn, _c5
    assert outs[0] == outs[1]
