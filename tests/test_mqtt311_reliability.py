# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""QoS 1 reliability of crtpy.mqtt across broker restarts.

Two publishers send numbered QoS 1 messages to one subscriber (persistent sessions)
while the broker is stopped and restarted twice.  Every message must arrive at least
once, first arrivals in per-publisher order; interrupted/resumed fire for every client
and the subscription keeps working.  1,000 messages by default, 10,000 with
CRTPY_LONG_TESTS=1.

The broker is stopped with SIGTERM so that Mosquitto saves its persistent state (the
sessions and their queued messages): after SIGKILL a broker loses messages it has
already acknowledged, which no client can recover.  The ping-silence test stops the
broker with SIGSTOP instead.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from helpers.mqtt311_util import Events, new_topic
from helpers.mqtt_reliability import qos1_survives_broker_restarts

from crtpy import mqtt

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"


def test_qos1_messages_survive_two_broker_restarts(mosquitto_factory):
    broker = mosquitto_factory(extra={"persistence": "true", "max_queued_messages": 0,
                                      "max_inflight_messages": 100})

    def connect(client_id: str, ev: Events) -> mqtt.Connection:
        return mqtt.Connection(mqtt.Client(), broker.host, broker.port, client_id, clean_session=False,
                               reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=1, **ev.callbacks())

    qos1_survives_broker_restarts(broker, mqtt, connect, "rel", total=10_000 if LONG else 1_000,
                                  wait_resubscribe=True)


def test_stopped_broker_detected_by_ping_timeout(mosquitto):
    """A broker that stops answering (SIGSTOP) is detected within keep-alive + ping timeout."""
    ev = Events()
    conn = mqtt.Connection(mqtt.Client(), mosquitto.host, mosquitto.port, new_topic("ping").replace("/", "-"),
                           keep_alive_secs=1, ping_timeout_ms=500, reconnect_min_timeout_secs=1,
                           reconnect_max_timeout_secs=1, **ev.callbacks())
    conn.connect().result(T)
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        err = ev.wait("interrupted", timeout=T)["error"]
        elapsed = time.monotonic() - start
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    assert err.name == "AWS_ERROR_MQTT_TIMEOUT"
    assert elapsed < 1.0 + 0.5 + 2.0  # keep-alive + ping timeout, with slack for a loaded machine
    ev.wait("resumed", timeout=T)
    conn.disconnect().result(T)
