"""The MQTT 5 client state machine (crtpy._mqtt.client5.Core) driven directly with bytes
and time: no sockets, no threads."""
from __future__ import annotations

import pytest

from crtpy._mqtt import client5 as k
from crtpy._mqtt import codec as c


class Done:
    def __init__(self):
        self.calls = []

    def __call__(self, result, exc):
        self.calls.append((result, exc))


def make(**cfg):
    config = k.Config()
    config.connect.keep_alive = cfg.pop("keep_alive", 60)
    for name, value in cfg.items():
        setattr(config, name, value)
    return k.Core(config)


def take(core):
    data = b"".join(core.output)
    core.output.clear()
    return c.Decoder(5).feed(data)


def connect(core, now=0.0, props=None):
    core.events.clear()
    core.connection_opened(now)
    sent = take(core)
    assert len(sent) == 1 and isinstance(sent[0], c.Connect)
    core.data_received(c.encode(c.Connack(False, 0, props or {})), now)
    kinds = [e.kind for e in core.events]
    core.events.clear()
    assert kinds == ["connect_success"]
    return sent[0]


def publish_op(topic="t", qos=1, payload=b"p"):
    done = Done()
    return k.Op(c.Publish(topic, payload, qos), done, 10), done


def test_receive_maximum_limits_inflight_qos1():
    core = make()
    connect(core, props={c.P_RECEIVE_MAXIMUM: 2})
    ops = [publish_op() for _ in range(5)]
    for op, _ in ops:
        core.submit(op, 1.0)
    sent = take(core)
    assert [p.packet_id for p in sent] == [1, 2]
    core.data_received(c.encode(c.Ack(c.PUBACK, 1)), 2.0)
    assert [p.packet_id for p in take(core)] == [3]
    assert ops[0][1].calls and ops[0][1].calls[0][1] is None
    # QoS 0 publishes wait behind the blocked QoS 1 publish (queue order is kept)
    op0, done0 = publish_op(qos=0)
    core.submit(op0, 2.0)
    assert take(core) == []
    for pid in (2, 3, 4, 5):
        core.data_received(c.encode(c.Ack(c.PUBACK, pid)), 3.0)
    assert done0.calls == [(None, None)]
    assert core.stats() == (0, 0, 0, 0)


def test_keep_alive_ping_and_timeout():
    core = make(keep_alive=10, ping_timeout=2.0)
    connect(core, now=0.0)
    assert core.next_deadline() == 10.0
    core.tick(9.9)
    assert take(core) == []
    core.tick(10.0)
    assert [type(p) for p in take(core)] == [c.Pingreq]
    assert core.next_deadline() == 12.0
    core.data_received(c.encode(c.Pingresp()), 11.0)
    assert core.close_error is None
    core.tick(21.0)
    assert [type(p) for p in take(core)] == [c.Pingreq]
    core.tick(23.5)
    assert core.close_error.name == "AWS_ERROR_MQTT5_PING_RESPONSE_TIMEOUT"


def test_connack_timeout_and_failure_event():
    core = make(connack_timeout=5.0)
    core.connection_opened(0.0)
    take(core)
    core.tick(4.9)
    assert core.close_error is None
    core.tick(5.0)
    assert core.close_error.name == "AWS_ERROR_MQTT5_CONNACK_TIMEOUT"
    core.connection_lost(None)
    assert [(e.kind, e.a.name) for e in core.events] == [("connect_failure", "AWS_ERROR_MQTT5_CONNACK_TIMEOUT")]


def test_packet_ids_wrap_and_skip_ids_in_use():
    core = make()
    connect(core)
    core.next_packet_id = 65534
    ops = [publish_op() for _ in range(3)]
    for op, _ in ops:
        core.submit(op, 0.0)
    assert [p.packet_id for p in take(core)] == [65534, 65535, 1]
    core.data_received(c.encode(c.Ack(c.PUBACK, 65535)), 0.0)
    core.next_packet_id = 65534
    op, _ = publish_op()
    core.submit(op, 0.0)
    assert [p.packet_id for p in take(core)] == [65535]  # 65534 is still in flight


@pytest.mark.parametrize("mode,kept", [
    (k.FAIL_QOS0_PUBLISH, {"q1", "sub", "q1-unacked", "sub-unacked"}),
    (k.FAIL_NON_QOS1_PUBLISH, {"q1", "q1-unacked"}),
    (k.FAIL_ALL, {"q1-unacked"}),
])
def test_offline_queue_policy_on_disconnect(mode, kept):
    core = make(offline_queue=mode)
    connect(core, props={c.P_RECEIVE_MAXIMUM: 1})
    dones = {}

    def add(name, packet):
        dones[name] = Done()
        core.submit(k.Op(packet, dones[name], 5), 0.0)

    add("q1-unacked", c.Publish("t", b"", 1))
    add("sub-unacked", c.Subscribe(0, [c.Subscription("a")]))
    add("q1", c.Publish("t", b"", 1))        # blocked by receive maximum 1
    add("q0", c.Publish("t", b"", 0))
    add("sub", c.Subscribe(0, [c.Subscription("b")]))
    take(core)
    core.connection_lost(ConnectionResetError())
    assert [e.kind for e in core.events] == ["disconnection"]
    failed = {n for n, d in dones.items() if d.calls}
    assert failed == set(dones) - kept
    for n in failed:
        assert dones[n].calls[0][1].name == "AWS_ERROR_MQTT5_OPERATION_FAILED_DUE_TO_OFFLINE_QUEUE_POLICY"
    # reconnect: the unacked QoS 1 publish goes first, with DUP when the session resumed
    core.events.clear()
    core.connection_opened(1.0)
    take(core)
    core.data_received(c.encode(c.Connack(True, 0)), 1.0)
    sent = take(core)
    assert isinstance(sent[0], c.Publish) and sent[0].dup is True and sent[0].packet_id == 1


def test_lru_topic_aliases():
    core = make(outbound_alias=k.ALIAS_LRU, outbound_alias_cache=2)
    connect(core, props={c.P_TOPIC_ALIAS_MAXIMUM: 5})
    for t in ("a", "b", "a", "c", "a", "b"):
        op, _ = publish_op(topic=t, qos=0)
        core.submit(op, 0.0)
    sent = [(p.topic, p.props.get(c.P_TOPIC_ALIAS)) for p in take(core)]
    # cache of 2: a->1, b->2, a hit, c evicts b (LRU) and takes 2, a hit, b evicts c
    assert sent == [("a", 1), ("b", 2), ("", 1), ("c", 2), ("", 1), ("b", 2)]


def test_outbound_packet_too_large_fails_only_that_operation():
    core = make()
    connect(core, props={c.P_MAXIMUM_PACKET_SIZE: 100})
    big, big_done = publish_op(payload=b"x" * 200)
    small, _small_done = publish_op(payload=b"x")
    core.submit(big, 0.0)
    core.submit(small, 0.0)
    assert big_done.calls[0][1].name == "AWS_ERROR_MQTT5_PACKET_VALIDATION"
    assert [p.payload for p in take(core)] == [b"x"]
    assert core.close_error is None


def test_inbound_alias_rules():
    core = make(inbound_alias_max=2)
    connect(core)
    core.data_received(c.encode(c.Publish("x/y", b"1", props={c.P_TOPIC_ALIAS: 2})), 0.0)
    core.data_received(c.encode(c.Publish("", b"2", props={c.P_TOPIC_ALIAS: 2})), 0.0)
    assert [(e.a.topic, e.a.payload) for e in core.events] == [("x/y", b"1"), ("x/y", b"2")]
    core.data_received(c.encode(c.Publish("", b"3", props={c.P_TOPIC_ALIAS: 3})), 0.0)
    assert core.close_error.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
    out = take(core)
    assert isinstance(out[-1], c.Disconnect) and out[-1].reason_code == 0x82


def test_session_behaviour_sets_clean_start():
    for behavior, first, second in ((1, True, True), (2, True, False), (3, False, False)):
        core = make(session_behavior=behavior)
        assert connect(core).clean_start is first
        core.connection_lost(None)
        assert connect(core).clean_start is second


def test_operations_wait_while_every_packet_id_is_in_use():
    """65,535 unacknowledged operations: the next ones needing an identifier wait in
    the queue, in order, until an acknowledgement frees one (nothing raises, nothing
    is lost); QoS 0 publishes behind them keep their place."""
    core = make()
    connect(core)
    first = []
    for _ in range(65535):
        op, done = publish_op()
        core.submit(op, 0.0)
        first.append(done)
    assert len(take(core)) == 65535
    sub_done = Done()
    core.submit(k.Op(c.Subscribe(0, [c.Subscription("s")]), sub_done, 10), 0.0)
    pub, pub_done = publish_op()
    core.submit(pub, 0.0)
    q0, q0_done = publish_op(qos=0)
    core.submit(q0, 0.0)
    assert take(core) == [] and len(core.queue) == 3
    assert not sub_done.calls and not pub_done.calls and not q0_done.calls
    core.data_received(c.encode(c.Ack(c.PUBACK, 7)), 1.0)
    sent = take(core)
    assert [(type(p), p.packet_id) for p in sent] == [(c.Subscribe, 7)]
    core.data_received(c.encode(c.Ack(c.PUBACK, 9)), 1.0)
    sent = take(core)
    assert [(type(p), p.packet_id, p.qos) for p in sent] == [(c.Publish, 9, 1), (c.Publish, 0, 0)]
    assert q0_done.calls == [(None, None)]
    assert first[6].calls and first[8].calls and not first[7].calls
