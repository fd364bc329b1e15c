# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""QoS 1 reliability of the MQTT 3.1.1 adapter over the MQTT 5 client
(``mqtt5.Client.new_connection()``) across broker restarts.

The scenario of tests/test_mqtt311_reliability.py (tests/helpers/mqtt_reliability.py):
two publishers send numbered QoS 1 messages to one subscriber (persistent sessions: REJOIN_ALWAYS with a session expiry)
while the broker is stopped (SIGTERM, so Mosquitto saves its sessions) and restarted
twice.  Every message arrives at least once, first arrivals in per-publisher order;
interrupted/resumed fire for every adapter and the subscription keeps working.
1,000 messages by default, 10,000 with CRTPY_LONG_TESTS=1.
"""
from __future__ import annotations

import os

import pytest
from helpers.mosquitto import mosquitto_factory  # noqa: F401 - fixture
from helpers.mqtt311_util import Events
from helpers.mqtt_reliability import qos1_survives_broker_restarts

from crtpy import mqtt, mqtt5

pytestmark = pytest.mark.usefixtures("leak_check")

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"


def _adapter(broker, client_id: str, ev: Events):
    options = mqtt5.ClientOptions(
        broker.host, broker.port,
        connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=30,
                                            session_expiry_interval_sec=3600),
        session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
        offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT,
        min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000)
    client = mqtt5.Client(options)
    conn = client.new_connection(**ev.callbacks())
    assert conn.clean_session is False
    return client, conn


def test_qos1_messages_survive_two_broker_restarts(mosquitto_factory):
    broker = mosquitto_factory(extra={"persistence": "true", "max_queued_messages": 0,
                                      "max_inflight_messages": 100})
    clients = []  # the MQTT 5 clients stay alive as long as their adapters are used

    def connect(client_id: str, ev: Events) -> mqtt.Connection:
        client, conn = _adapter(broker, client_id, ev)
        clients.append(client)
        return conn

    qos1_survives_broker_restarts(broker, mqtt, connect, "arel", total=10_000 if LONG else 1_000,
                                  expect_session_present=True)
