"""The private listener interface shared by the MQTT clients (crtpy._mqtt.listeners),
and its users: the 3.1.1-over-MQTT-5 adapter and the request-response adapters.

No internal method of a protocol client may be wrapped or replaced, and a request-response
subscription on the same filter as a user's 3.1.1 subscription must leave the user's
message callback in place."""
from __future__ import annotations

import gc
import queue
import threading

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401  (fixtures)
from helpers.rr_responder import Responder, Statuses, connect_mqtt5, request_options

from crtpy import io, mqtt, mqtt5
from crtpy import mqtt_request_response as rr
from crtpy._mqtt.listeners import ListenerSet, ProtocolListener


class Rec(ProtocolListener):
    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.threads: set[str] = set()

    def on_publish(self, packet) -> None:  # type: ignore[no-untyped-def]
        self.threads.add(threading.current_thread().name)
        self.events.put(("publish", packet.topic, bytes(packet.payload)))

    def on_connected(self, rejoined_session: bool) -> None:
        self.events.put(("connected", rejoined_session))

    def on_disconnected(self, error) -> None:  # type: ignore[no-untyped-def]
        self.events.put(("disconnected",))

    def next(self, kind: str, timeout: float = 10.0) -> tuple:
        while True:
            ev = self.events.get(timeout=timeout)
            if ev[0] == kind:
                return ev


def test_listener_set_is_weak_and_survives_a_failing_listener(caplog):
    s = ListenerSet()
    assert not s
    good, bad = Rec(), Rec()
    bad.on_connected = None  # type: ignore[assignment]  # calling it raises TypeError
    s.add(bad)
    s.add(good)
    s.add(good)  # once only
    assert len(s.snapshot()) == 2
    s.emit("on_connected", True)
    assert good.events.get_nowait() == ("connected", True)
    assert "failed in on_connected" in caplog.text
    s.remove(bad)
    assert len(s.snapshot()) == 1 and s.snapshot()[0] is good
    # held weakly (a fresh set: the logged traceback above keeps emit's frame alive)
    weak = ListenerSet()
    weak.add(Rec())
    gc.collect()
    assert not weak.snapshot() and not weak


def _no_wrapped_internals(obj) -> None:  # type: ignore[no-untyped-def]
    for name in ("_deliver", "_crt_on_success", "_crt_on_interrupted", "_crt_on_resumed"):
        assert name not in vars(obj), f"{name} was replaced on {obj!r}"


def test_mqtt5_listener_events_and_rr_uses_it(mosquitto, leak_check):  # noqa: F811
    client, _life = connect_mqtt5(mqtt5, mosquitto.port)
    try:
        rec = Rec()
        driver = client._driver
        driver._add_listener(rec)
        assert driver._is_connected()
        c = rr.Client(client, rr.ClientOptions(4, 2, 5))
        s = Statuses()
        op = c.create_stream(rr.StreamingOperationOptions("l5/#", s.status, s.publish))
        op.open()
        assert s.wait(1) == [("status", 0, None)]
        _no_wrapped_internals(driver)
        assert not hasattr(driver, "_crtpy_rr_hub")
        pub = Responder(mosquitto.port, pattern="unused/+")
        try:
            pub.publish("l5/x", b"hi")
            assert rec.next("publish") == ("publish", "l5/x", b"hi")
            assert s.wait(2)[1] == ("publish", "l5/x", b"hi")
        finally:
            pub.close()
        assert all(t.startswith("crtpy") for t in rec.threads), rec.threads
        client.stop()
        rec.next("disconnected")
        driver._remove_listener(rec)
        del op, c
    finally:
        client.stop()
        del client
        gc.collect()


@pytest.mark.parametrize("over_mqtt5", [False, True], ids=["mqtt311", "adapter"])
def test_rr_keeps_user_callback_on_same_filter(over_mqtt5, mosquitto, leak_check):  # noqa: F811
    if over_mqtt5:
        client5, _life = connect_mqtt5(mqtt5, mosquitto.port)
        conn = client5.new_connection()
    else:
        client5 = None
        conn = mqtt.Connection(client=mqtt.Client(io.ClientBootstrap.get_or_create_static_default()),
                               host_name="127.0.0.1", port=mosquitto.port, client_id="listen311")
    rec = Rec()
    conn._add_listener(rec)
    conn.connect().result(10)
    rec.next("connected")
    got: queue.Queue = queue.Queue()
    conn.subscribe("shared/#", mqtt.QoS.AT_LEAST_ONCE,
                   lambda topic, payload, **_kw: got.put((topic, payload)))[0].result(10)
    c = rr.Client(conn, rr.ClientOptions(4, 2, 5))
    s = Statuses()
    op = c.create_stream(rr.StreamingOperationOptions("shared/#", s.status, s.publish))
    op.open()
    assert s.wait(1) == [("status", 0, None)]
    _no_wrapped_internals(conn)
    pub = Responder(mosquitto.port)
    try:
        pub.publish("shared/a", b"one")
        assert got.get(timeout=10) == ("shared/a", b"one")      # the user's callback still runs
        assert s.wait(2)[1] == ("publish", "shared/a", b"one")   # and the stream gets it too
        # requests still work, and dropping the stream (an UNSUBSCRIBE the engine sends
        # later) leaves the user's callback registered
        assert c.make_request(request_options(rr, "lst", "tok")).result(10).topic == "svc/lst/accepted"
        del op
        gc.collect()
        assert ("shared/#", 1) in [(f, int(q)) for f, q in
                                  (conn._adapter.subscriptions() if over_mqtt5 else conn._driver.subscriptions())]
    finally:
        pub.close()
    del c
    gc.collect()
    conn.disconnect().result(10)
    rec.next("disconnected")
    del conn, rec
    if client5 is not None:
        client5.stop()
        del client5
    gc.collect()
