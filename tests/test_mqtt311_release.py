# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""A bare crtpy.mqtt.Connection is released once it is disconnected (or dropped), even
when its callbacks refer back to it: nothing in the runtime (callback queue, loop
callbacks, timers, the driver's task, a finalizer, a kept error) may keep it alive."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest
from conftest import free_port
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy import io, mqtt
from crtpy import mqtt_request_response as rr

T = 10.0


def _gone(ref: weakref.ref, timeout: float = 5.0) -> bool:
    """Collect until ``ref`` dies; the connection's driver task may still be finishing
    its last loop iteration when disconnect()'s future completes."""
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        gc.collect()
        if ref() is None:
            return True
        done.wait(0.05)
    return ref() is None


def _conn(port: int, **kw) -> mqtt.Connection:
    return mqtt.Connection(client=mqtt.Client(io.ClientBootstrap.get_or_create_static_default()),
                           host_name="127.0.0.1", port=port, client_id="release",
                           reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=2, **kw)


def _message_cb(conn: mqtt.Connection, events: list[str]):  # type: ignore[no-untyped-def]
    def on_message(topic: str, payload: bytes, **_kw: object) -> None:
        events.append(f"{conn.client_id} {topic}")  # refers back to the connection
    return on_message


def _refer_back(conn: mqtt.Connection, events: list[str]) -> None:
    """Callbacks whose closures hold the connection: a cycle only gc can break (a
    closure in the test itself would be emptied by ``del conn``)."""
    def on_interrupted(connection: mqtt.Connection, error: BaseException, **_kw: object) -> None:
        events.append(f"interrupted {conn.client_id}")

    conn._on_connection_interrupted_cb = on_interrupted  # as if passed to the constructor
    conn.on_message(_message_cb(conn, events))


@pytest.mark.parametrize("scenario", ["never_connected", "connect_failed", "disconnected",
                                      "dropped_while_connected", "disconnected_while_reconnecting",
                                      "with_request_response"])
def test_connection_released(scenario, mosquitto, leak_check):
    events: list[str] = []
    port = free_port() if scenario == "connect_failed" else mosquitto.port
    conn = _conn(port)
    _refer_back(conn, events)
    if scenario == "connect_failed":
        with pytest.raises(Exception):  # noqa: B017 - any connect error
            conn.connect().result(T)
    elif scenario != "never_connected":
        conn.connect().result(T)
        conn.subscribe("rel/#", mqtt.QoS.AT_LEAST_ONCE, _message_cb(conn, events))[0].result(T)
        conn.publish("rel/a", b"x", mqtt.QoS.AT_LEAST_ONCE)[0].result(T)
        if scenario == "with_request_response":
            c = rr.Client(conn, rr.ClientOptions(4, 2, 5))
            del c
        if scenario == "disconnected_while_reconnecting":
            mosquitto.stop()
        if scenario != "dropped_while_connected":
            conn.disconnect().result(T)
    ref = weakref.ref(conn)
    del conn
    assert _gone(ref), gc.get_referrers(ref()) if ref() is not None else None
    if scenario == "disconnected_while_reconnecting":
        mosquitto.start()
