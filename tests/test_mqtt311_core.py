"""The sans-I/O MQTT 3.1.1 state machine (crtpy._mqtt311.core): bytes and time in,
bytes, events and deadlines out.  No sockets, no threads, no sleeping."""
from __future__ import annotations

import pytest

from crtpy._mqtt import codec as c
from crtpy._mqtt311 import core as k


def make(clean=True, keep_alive=60, ping=3.0, op_timeout=0.0) -> k.Core:
    return k.Core(k.Config(c.Connect(4, "cid", clean, keep_alive), ping, op_timeout))


def take(core: k.Core) -> list[c.Packet]:
    out = [c.decode_one(b, 4) for b in core.output]
    core.output.clear()
    return out


def events(core: k.Core) -> list[k.Event]:
    ev, core.events = core.events, []
    return ev


def connect(core: k.Core, now=0.0, session_present=False) -> None:
    core.connection_opened(now)
    assert isinstance(take(core)[0], c.Connect)
    core.data_received(bytes((0x20, 2, int(session_present), 0)), now)
    assert [e.kind for e in events(core)] == ["connected"]


def op(core: k.Core, qos=1, results=None) -> k.Op:
    pid = core.allocate_pid()
    data = c.encode_publish(c.Publish("a/b", b"x", qos, False, False, pid if qos else 0), 4)
    return k.Op(k.PUBLISH, pid, data, lambda r, e: results.append((r, e)) if results is not None else None, qos)


def done_events(core):
    return [e.b for e in events(core) if e.kind == "done"]


def test_offline_queue_resend_with_dup_and_ack():
    core = make(clean=False)
    core.submit(op(core), 0.0)
    assert core.output == [] and core.stats()[0] == 1
    connect(core)
    (p,) = take(core)
    assert p.dup is False and p.packet_id == 1
    assert core.stats()[2] == 1  # unacked
    core.connection_lost(None)
    assert [e.kind for e in events(core)] == ["lost"]
    connect(core, session_present=True)
    (p2,) = take(core)
    assert p2.dup is True and p2.packet_id == 1
    core.data_received(b"\x40\x02\x00\x01", 1.0)
    assert done_events(core) == [({"packet_id": 1}, None)]
    assert core.stats() == (0, 0, 0, 0) and not core.pids_used


def test_qos0_offline_fails_at_once():
    core = make()
    core.submit(op(core, qos=0), 0.0)
    ((r, e),) = done_events(core)
    assert r is None and e.name == "AWS_ERROR_MQTT_NOT_CONNECTED"


def test_clean_session_cancel():
    core = make(clean=True)
    connect(core)
    core.submit(op(core), 0.0)
    take(core)
    core.connection_lost(None)
    events(core)
    core.connection_opened(1.0)
    take(core)
    core.data_received(b"\x20\x02\x00\x00", 1.0)
    kinds = [(e.kind, e.b[1].name if e.kind == "done" else None) for e in events(core)]
    assert kinds == [("done", "AWS_ERROR_MQTT_CANCELLED_FOR_CLEAN_SESSION"), ("connected", None)]
    assert take(core) == []


def test_keep_alive_ping_and_timeout():
    core = make(keep_alive=10, ping=2.0)
    connect(core, now=0.0)
    assert core.next_deadline() == 10.0
    core.tick(10.0)
    assert take(core) == [c.Pingreq()]
    assert core.next_deadline() == 12.0
    core.data_received(c.PINGRESP_BYTES, 11.0)
    assert core.close_error is None and core.next_deadline() == 20.0
    core.tick(20.0)
    take(core)
    core.tick(22.0)
    assert core.close_error.name == "AWS_ERROR_MQTT_TIMEOUT"


def test_connack_timeout():
    core = make(ping=3.0)
    core.connection_opened(0.0)
    assert core.next_deadline() == 3.0
    core.tick(3.0)
    assert core.close_error.name == "AWS_ERROR_MQTT_TIMEOUT"


def test_operation_timeout():
    res: list = []
    core = make(op_timeout=5.0)
    connect(core)
    core.submit(op(core, results=res), 1.0)
    assert core.next_deadline() == 6.0
    core.tick(6.0)
    for e in events(core):
        e.a.done(*e.b)
    assert res[0][1].name == "AWS_ERROR_MQTT_TIMEOUT" and core.stats() == (0, 0, 0, 0)


def test_inbound_qos1_and_qos2_acks_and_duplicate_suppression():
    core = make()
    connect(core)
    core.data_received(c.encode_publish(c.Publish("t", b"1", 1, False, False, 5), 4), 0.0)
    assert take(core) == [c.Ack(c.PUBACK, 5)]
    q2 = c.encode_publish(c.Publish("t", b"2", 2, False, False, 6), 4)
    core.data_received(q2, 0.0)
    core.data_received(q2, 0.0)  # resent before PUBREL: delivered once
    assert take(core) == [c.Ack(c.PUBREC, 6), c.Ack(c.PUBREC, 6)]
    core.data_received(b"\x62\x02\x00\x06", 0.0)
    assert take(core) == [c.Ack(c.PUBCOMP, 6)]
    assert [e.a.payload for e in events(core) if e.kind == "publish"] == [b"1", b"2"]


@pytest.mark.parametrize("data, name", [
    (b"\x30\x80\x80\x80\x80\x01", "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"),
    (b"\x80\x06\x00\x01\x00\x01a\x00", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS"),
    (b"\xf0\x00", "AWS_ERROR_MQTT_INVALID_PACKET_TYPE"),
    (b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00", "AWS_ERROR_MQTT_PROTOCOL_ERROR"),  # CONNECT from server
])
def test_malformed_input_closes(data, name):
    core = make()
    connect(core)
    core.data_received(data, 0.0)
    assert core.close_error is not None and core.close_error.name == name
    core.data_received(b"\x40\x02\x00\x01", 0.0)  # ignored after the error
    core.connection_lost(None)
    (lost,) = events(core)
    assert lost.kind == "lost" and lost.a.name == name and lost.b is True


def test_packet_ids_skip_those_in_use_and_wrap():
    core = make()
    core.next_pid = 65535
    a = core.allocate_pid()
    b = core.allocate_pid()
    assert (a, b) == (65535, 1)
    core.next_pid = 1
    assert core.allocate_pid() == 2


def test_random_server_bytes_never_raise():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
    def run(chunks, before_connack):
        core = make()
        if before_connack:
            core.connection_opened(0.0)
        else:
            connect(core)
        for ch in chunks:
            core.data_received(ch, 0.0)  # must not raise: errors become close_error
        if core.close_error is not None:
            assert core.close_error.name.startswith(("AWS_ERROR_MQTT", "AWS_IO"))
        core.connection_lost(None)

    run()
