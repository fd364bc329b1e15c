"""MQTT codec (crtpy._mqtt.codec): round trips of every packet type at levels 4 and 5,
incremental decoding, size limits, and fuzzing with random bytes."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crtpy._mqtt import codec as c
from crtpy.exceptions import AwsCrtError

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"
EXAMPLES = 2000 if LONG else 150

DOCUMENTED = {
    "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR", "AWS_ERROR_MQTT5_INVALID_UTF8_STRING",
    "AWS_ERROR_MQTT_INVALID_PACKET_TYPE", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS",
    "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH", "AWS_ERROR_MQTT_PROTOCOL_ERROR",
    "AWS_ERROR_MQTT_BUFFER_TOO_BIG", "AWS_ERROR_MQTT_UNSUPPORTED_PROTOCOL_NAME",
    "AWS_ERROR_MQTT_UNSUPPORTED_PROTOCOL_LEVEL", "AWS_ERROR_MQTT_INVALID_QOS",
}

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
blob = st.binary(max_size=40)
u16 = st.integers(1, 65535)
u32 = st.integers(0, 2**32 - 1)
user_props = st.lists(st.tuples(text, text), min_size=1, max_size=3)

_STRATEGY_BY_KIND = {"B": st.integers(0, 1), "H": u16, "I": u32, "S": text, "D": blob,
                     "V": st.integers(1, c.MAX_VARINT), "P": user_props}


def props_for(ptype: int):
    allowed = sorted(c.ALLOWED_PROPERTIES[ptype])
    entries = {}
    for pid in allowed:
        s = _STRATEGY_BY_KIND[c.PROPERTY_KINDS[pid]]
        if pid == c.P_MAXIMUM_PACKET_SIZE:
            s = st.integers(1, 2**32 - 1)
        if pid == c.P_MAXIMUM_QOS:
            s = st.integers(0, 1)
        if pid == c.P_SUBSCRIPTION_IDENTIFIER and ptype == c.PUBLISH:
            s = st.lists(st.integers(1, c.MAX_VARINT), min_size=1, max_size=3)
        entries[pid] = s
    return st.fixed_dictionaries({}, optional=entries)


def publish(version: int, ptype: int = c.PUBLISH):
    props = props_for(ptype) if version == 5 else st.just({})

    @st.composite
    def build(draw):
        qos = draw(st.integers(0, 2))
        return c.Publish(draw(text), draw(blob), qos, draw(st.booleans()),
                         draw(st.booleans()) if qos else False,
                         draw(u16) if qos else 0, draw(props))
    return build()


def packets(version: int):
    v5 = version == 5
    P = (lambda t: props_for(t)) if v5 else (lambda t: st.just({}))
    will = st.none() | publish(version, c.WILL).map(_as_will)
    connect = st.builds(c.Connect, st.just(version), text, st.booleans(), st.integers(0, 65535),
                        st.none() | text, st.none() | blob, will, P(c.CONNECT))
    connack = st.builds(c.Connack, st.booleans(), st.integers(0, 255) if v5 else st.integers(0, 5), P(c.CONNACK))
    acks = st.builds(c.Ack, st.sampled_from([c.PUBACK, c.PUBREC, c.PUBREL, c.PUBCOMP]), u16,
                     st.integers(0, 255) if v5 else st.just(0), P(c.PUBACK))
    subs = st.lists(st.builds(c.Subscription, text, st.integers(0, 2),
                              st.booleans() if v5 else st.just(False),
                              st.booleans() if v5 else st.just(False),
                              st.integers(0, 2) if v5 else st.just(0)), min_size=1, max_size=4)
    subscribe = st.builds(c.Subscribe, u16, subs,
                          st.fixed_dictionaries({}, optional={
                              c.P_SUBSCRIPTION_IDENTIFIER: st.integers(1, c.MAX_VARINT),
                              c.P_USER_PROPERTY: user_props}) if v5 else st.just({}))
    codes = st.lists(st.integers(0, 255), min_size=1, max_size=5)
    suback = st.builds(c.Suback, u16, codes, P(c.SUBACK))
    unsubscribe = st.builds(c.Unsubscribe, u16, st.lists(text, min_size=1, max_size=4), P(c.UNSUBSCRIBE))
    unsuback = st.builds(c.Unsuback, u16, codes if v5 else st.just([]), P(c.UNSUBACK))
    simple = st.sampled_from([c.Pingreq(), c.Pingresp()])
    disconnect = st.builds(c.Disconnect, st.integers(0, 255) if v5 else st.just(0), P(c.DISCONNECT))
    options = [connect, connack, publish(version), acks, subscribe, suback, unsubscribe,
               unsuback, simple, disconnect]
    if v5:
        options.append(st.builds(c.Auth, st.integers(0, 255), P(c.AUTH)))
    return st.one_of(options)


def _as_will(p: c.Publish) -> c.Publish:
    return c.Publish(p.topic, p.payload, p.qos, p.retain, props=p.props)


@pytest.mark.parametrize("version", [4, 5])
def test_round_trip_every_packet_type(version):
    @settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(packets(version))
    def check(p):
        data = c.encode(p, version)
        assert c.decode_one(data, version) == p

    check()


@pytest.mark.parametrize("version", [4, 5])
def test_stream_split_anywhere(version):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(packets(version), min_size=1, max_size=6), st.data())
    def check(ps, data):
        stream = b"".join(c.encode(p, version) for p in ps)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
        d = c.Decoder(version)
        got = []
        prev = 0
        for cut in cuts + [len(stream)]:
            got += d.feed(stream[prev:cut])
            prev = cut
        assert got == ps
        assert d.buffered == 0

    check()


@pytest.mark.parametrize("version", [4, 5])
def test_random_bytes_raise_only_documented_errors(version):
    @settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=64), st.integers(16, 1 << 20))
    def check(data, maximum):
        d = c.Decoder(version, maximum)
        try:
            d.feed(data)
        except AwsCrtError as e:
            assert e.name in DOCUMENTED, e.name

    check()


@pytest.mark.parametrize("version", [4, 5])
def test_mutated_packets_raise_only_documented_errors(version):
    @settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
    @given(packets(version), st.data())
    def check(p, data):
        raw = bytearray(c.encode(p, version))
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        try:
            c.Decoder(version).feed(bytes(raw))
        except AwsCrtError as e:
            assert e.name in DOCUMENTED, e.name

    check()


def test_varint_boundaries():
    for n, enc in [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                   (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
                   (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")]:
        assert c.encode_varint(n) == enc
        assert c.varint_size(n) == len(enc)
    with pytest.raises(AwsCrtError) as ei:
        c.encode_varint(268435456)
    assert ei.value.name == "AWS_ERROR_MQTT5_ENCODE_FAILURE"


def test_remaining_length_of_five_bytes_is_rejected():
    with pytest.raises(AwsCrtError) as ei:
        c.Decoder(5).feed(b"\x30\xff\xff\xff\xff\x01")
    assert ei.value.name == "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
    with pytest.raises(AwsCrtError) as ei:
        c.Decoder(4).feed(b"\x30\xff\xff\xff\xff\x01")
    assert ei.value.name == "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"


def test_maximum_packet_size_checked_before_buffering():
    d = c.Decoder(5, maximum_packet_size=1000)
    header = b"\x30" + c.encode_varint(100_000)
    with pytest.raises(AwsCrtError) as ei:
        d.feed(header)  # only the header arrived: refused without waiting for the body
    assert ei.value.name == "AWS_ERROR_MQTT_BUFFER_TOO_BIG"
    assert d.buffered == 0
    # the decoder stays failed
    with pytest.raises(AwsCrtError):
        d.feed(b"\xd0\x00")


def test_exactly_maximum_size_is_accepted():
    p = c.Publish("t", b"x" * 100)
    raw = c.encode(p, 5)
    assert c.Decoder(5, maximum_packet_size=len(raw)).feed(raw) == [p]
    with pytest.raises(AwsCrtError):
        c.Decoder(5, maximum_packet_size=len(raw) - 1).feed(raw)


@pytest.mark.parametrize("raw,name", [
    (b"\x00\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),             # packet type 0
    (b"\xd1\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),             # PINGRESP flags
    (b"\x36\x03\x00\x01t", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),    # QoS 3
    (b"\x30\x05\x00\x01t\x02\x7f\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),  # unknown property
    (b"\x30\x05\x00\x01t\x02\x11\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),  # session expiry in PUBLISH
    (b"\x30\x04\x00\x01\xff\x00", "AWS_ERROR_MQTT5_INVALID_UTF8_STRING"),
    (b"\x30\x04\x00\x01\x00\x00", "AWS_ERROR_MQTT5_INVALID_UTF8_STRING"),
    (b"\x40\x04\x00\x01\x00\x05", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),  # property length past end
    (b"\x30\x06\x00\x01t\x03\x23\x00\x00", "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"),  # topic alias 0
])
def test_malformed_level5(raw, name):
    with pytest.raises(AwsCrtError) as ei:
        c.Decoder(5).feed(raw)
    assert ei.value.name == name


@pytest.mark.parametrize("raw,name", [
    (b"\xf0\x00", "AWS_ERROR_MQTT_INVALID_PACKET_TYPE"),   # AUTH does not exist in 3.1.1
    (b"\x62\x02\x00\x01"[:1] + b"\x02\x00\x01", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS"),  # PUBREL flags 0
    (b"\xd0\x01\x00", "AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH"),
    (b"\x20\x02\x02\x00", "AWS_ERROR_MQTT_INVALID_RESERVED_BITS"),
])
def test_malformed_level4(raw, name):
    raw = raw if raw[0] != 0x62 else b"\x60\x02\x00\x01"
    with pytest.raises(AwsCrtError) as ei:
        c.Decoder(4).feed(raw)
    assert ei.value.name == name


def test_encode_rejects_bad_strings():
    for bad in ("a\x00b", "\ud800", "x" * 70000):
        with pytest.raises(AwsCrtError) as ei:
            c.encode(c.Publish(bad, b""), 5)
        assert ei.value.name == "AWS_ERROR_MQTT5_ENCODE_FAILURE"
        with pytest.raises(AwsCrtError) as ei:
            c.encode(c.Publish(bad, b""), 4)
        assert ei.value.name == "AWS_ERROR_MQTT_PROTOCOL_ERROR"


def test_known_bytes():
    # Hand-built packets checked against the specification's layouts.
    assert c.encode(c.Pingreq()) == b"\xc0\x00"
    assert c.encode(c.Ack(c.PUBACK, 10), 5) == b"\x40\x02\x00\x0a"
    assert c.encode(c.Ack(c.PUBREL, 10), 4) == b"\x62\x02\x00\x0a"
    p = c.Publish("a/b", b"hi", 1, packet_id=7, props={c.P_TOPIC_ALIAS: 3})
    assert c.encode(p, 5) == b"\x32\x0d\x00\x03a/b\x00\x07\x03\x23\x00\x03hi"
    assert c.encode(p, 4) == b"\x32\x09\x00\x03a/b\x00\x07hi"
    conn = c.Connect(4, "id", True, 60, "u", b"p")
    assert c.encode(conn) == (b"\x10\x14\x00\x04MQTT\x04\xc2\x00\x3c\x00\x02id\x00\x01u\x00\x01p")


def test_password_not_in_repr():
    assert "hunter2" not in repr(c.Connect(5, "id", password=b"hunter2"))
