"""Event-stream codec and Header API: known answers, round trips, botocore's parser as an
independent decoder/encoder, the reference's Header as an oracle, and decoder fuzzing."""
from __future__ import annotations

import os
import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from helpers.eventstream_server import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crtpy._eventstream import codec
from crtpy.eventstream import Header, HeaderType
from crtpy.exceptions import AwsCrtError

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"

DOCUMENTED = {
    "AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE",
    "AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE",
    "AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED",
    "AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH",
    "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN",
    "AWS_ERROR_EVENT_STREAM_MESSAGE_UNKNOWN_HEADER_TYPE",
    "AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE",
    "AWS_ERROR_INVALID_UTF8",
}


def triples(headers):
    return [(h.name, h.type, h.value) for h in headers]


ALL_TYPES = [
    Header.from_bool("true", True),
    Header.from_bool("false", False),
    Header.from_byte("byte", -128),
    Header.from_int16("int16", 32767),
    Header.from_int32("int32", -(2 ** 31)),
    Header.from_int64("int64", 2 ** 63 - 1),
    Header.from_byte_buf("buf", b"\x00\x01\xfe\xff"),
    Header.from_string("string", "h\u00e9llo \u2603"),
    Header.from_timestamp("timestamp", 1_700_000_000_123),
    Header.from_uuid("uuid", uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")),
]


# -- known answers --------------------------------------------------------------------------
# Written out byte by byte: total length, header length, prelude CRC, body, message CRC.
EMPTY_MESSAGE = bytes.fromhex("00000010" "00000000" "05c248eb" "7d98c8ff")


def test_empty_message_known_answer():
    assert codec.encode_message([], b"") == EMPTY_MESSAGE
    msg = codec.decode_message(EMPTY_MESSAGE)
    assert msg.headers == [] and msg.payload == b""


def test_known_answer_single_int32_header():
    # header: name_len=5 "event" type=4 (INT32) value=0x00000007; payload "{}"
    block = b"\x05event\x04\x00\x00\x00\x07"
    prelude = struct.pack(">II", 16 + len(block) + 2, len(block))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + b"{}"
    expected = body + struct.pack(">I", zlib.crc32(body))
    assert expected.hex() == (
        "0000001d0000000b" "6a8055d2" "056576656e740400000007" "7b7d" "895a9c51")
    assert codec.encode_message([Header.from_int32("event", 7)], b"{}") == expected
    msg = codec.decode_message(expected)
    assert triples(msg.headers) == [("event", HeaderType.INT32, 7)]
    assert msg.payload == b"{}"


def test_every_type_matches_independent_encoder():
    independent = frame([
        ("true", 0, None), ("false", 1, None), ("byte", 2, -128), ("int16", 3, 32767),
        ("int32", 4, -(2 ** 31)), ("int64", 5, 2 ** 63 - 1), ("buf", 6, b"\x00\x01\xfe\xff"),
        ("string", 7, "h\u00e9llo \u2603"), ("timestamp", 8, 1_700_000_000_123),
        ("uuid", 9, uuid.UUID("01234567-89ab-cdef-0123-456789abcdef").bytes),
    ], b"payload")
    assert codec.encode_message(ALL_TYPES, b"payload") == independent
    assert triples(codec.decode_message(independent).headers) == triples(ALL_TYPES)


def test_round_trip_every_header_type():
    for header in ALL_TYPES:
        data = codec.encode_message([header], b"x")
        (got,) = codec.decode_message(data).headers
        assert (got.name, got.type, got.value) == (header.name, header.type, header.value)
        assert type(got.value) is type(header.value)


# -- botocore as the independent parser --------------------------------------------------------
def botocore_decode(data: bytes):
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def test_crtpy_encoded_decoded_by_botocore():
    data = codec.encode_message(ALL_TYPES, b"\x00" * 1000)
    (msg,) = botocore_decode(data)
    assert msg.payload == b"\x00" * 1000
    expected = {h.name: h.value for h in ALL_TYPES}
    expected["uuid"] = ALL_TYPES[-1].value.bytes  # botocore gives UUIDs as bytes
    assert msg.headers == expected


def test_botocore_style_frames_decoded_by_crtpy():
    # botocore only decodes, so frames come from the helper's independent encoder
    data = frame([(":event-type", 7, "Records"), (":content-type", 7, "application/octet-stream"),
                  (":message-type", 7, "event")], b"1,2,3\n")
    assert botocore_decode(data)[0].payload == b"1,2,3\n"
    msg = codec.decode_message(data)
    assert triples(msg.headers) == [(":event-type", HeaderType.STRING, "Records"),
                                    (":content-type", HeaderType.STRING, "application/octet-stream"),
                                    (":message-type", HeaderType.STRING, "event")]
    assert msg.payload == b"1,2,3\n"


header_strategy = st.one_of(
    st.builds(Header.from_bool, st.text(max_size=20), st.booleans()),
    st.builds(Header.from_byte, st.text(max_size=20), st.integers(-128, 127)),
    st.builds(Header.from_int16, st.text(max_size=20), st.integers(-(2 ** 15), 2 ** 15 - 1)),
    st.builds(Header.from_int32, st.text(max_size=20), st.integers(-(2 ** 31), 2 ** 31 - 1)),
    st.builds(Header.from_int64, st.text(max_size=20), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.builds(Header.from_byte_buf, st.text(max_size=20), st.binary(max_size=64)),
    st.builds(Header.from_string, st.text(max_size=20), st.text(max_size=64)),
    st.builds(Header.from_timestamp, st.text(max_size=20), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.builds(Header.from_uuid, st.text(max_size=20), st.uuids()),
)


@settings(max_examples=1000 if LONG else 200, deadline=None)
@given(st.lists(header_strategy, max_size=8, unique_by=lambda h: h.name), st.binary(max_size=300))
def test_random_messages_round_trip_and_botocore_agrees(headers, payload):
    data = codec.encode_message(headers, payload)
    msg = codec.decode_message(data)
    assert triples(msg.headers) == triples(headers)
    assert msg.payload == payload
    (theirs,) = botocore_decode(data)
    assert theirs.payload == payload
    # (botocore refuses repeated names, hence unique ones here)
    expected = {h.name: h.value.bytes if h.type == HeaderType.UUID else h.value for h in headers}
    assert theirs.headers == expected


@settings(max_examples=500 if LONG else 100, deadline=None)
@given(st.lists(st.tuples(st.lists(header_strategy, max_size=4), st.binary(max_size=100)),
                min_size=1, max_size=5), st.data())
def test_incremental_decoder_any_split(messages, data):
    stream = b"".join(codec.encode_message(h, p) for h, p in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = codec.Decoder()
    got = []
    last = 0
    for cut in cuts + [len(stream)]:
        got.extend(decoder.messages(stream[last:cut]))
        last = cut
    decoder.close()
    assert [(triples(m.headers), m.payload) for m in got] == \
        [(triples(h), p) for h, p in messages]


@settings(max_examples=300 if LONG else 60, deadline=None)
@given(st.lists(st.tuples(st.lists(header_strategy, max_size=3), st.binary(max_size=200_000)),
                min_size=1, max_size=4), st.data())
def test_buffered_reads_any_split(messages, data):
    """The zero-copy path: the "socket" writes into get_buffer() views of any size."""
    stream = b"".join(codec.encode_message(h, p) for h, p in messages)
    decoder = codec.Decoder()
    got = []
    pos = 0
    while pos < len(stream):
        view = decoder.get_buffer(data.draw(st.sampled_from([-1, 1, 100, 65536])))
        n = min(len(view), len(stream) - pos, data.draw(st.integers(1, 300_000)))
        view[:n] = stream[pos:pos + n]
        decoder.buffer_updated(n)
        pos += n
        while (msg := decoder.next_message()) is not None:
            got.append(msg)
    decoder.close()
    assert [(triples(m.headers), m.payload) for m in got] == [(triples(h), p) for h, p in messages]


def test_large_message_lands_in_place():
    payload = os.urandom(5 * 1024 * 1024)
    data = codec.encode_message([Header.from_string("k", "v")], payload)
    decoder = codec.Decoder()
    view = decoder.get_buffer(-1)
    view[:100] = data[:100]
    decoder.buffer_updated(100)
    assert decoder.next_message() is None
    view = decoder.get_buffer(-1)  # room for the whole rest of the message at once
    assert len(view) >= len(data) - 100
    view[:len(data) - 100] = data[100:]
    decoder.buffer_updated(len(data) - 100)
    assert decoder.next_message().payload == payload
    assert decoder.pending == 0


def test_byte_at_a_time():
    stream = codec.encode_message(ALL_TYPES, b"abc") * 3
    decoder = codec.Decoder()
    got = []
    for i in range(len(stream)):
        got.extend(decoder.messages(stream[i:i + 1]))
        # never a partial message: only whole messages, and each exactly when complete
        assert len(got) == (i + 1) // (len(stream) // 3)
    assert all(m.payload == b"abc" for m in got)


# -- strict decoding -----------------------------------------------------------------------------
def error_name(data: bytes, incremental: bool = False) -> str:
    with pytest.raises(AwsCrtError) as info:
        if incremental:
            list(codec.Decoder().messages(data))
        else:
            codec.decode_message(data)
    return info.value.name


def with_prelude(total: int, headers_len: int, rest: bytes = b"") -> bytes:
    lengths = struct.pack(">II", total, headers_len)
    return lengths + struct.pack(">I", zlib.crc32(lengths)) + rest


def with_message_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_bad_prelude_crc():
    bad = bytearray(codec.encode_message(ALL_TYPES, b"x"))
    bad[8] ^= 0xFF
    assert error_name(bytes(bad)) == "AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE"
    # the incremental decoder reports it from the prelude alone, without waiting
    decoder = codec.Decoder()
    decoder.feed(bytes(bad[:12]))
    with pytest.raises(AwsCrtError) as info:
        decoder.next_message()
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE"


def test_bad_message_crc_and_payload_corruption():
    good = codec.encode_message(ALL_TYPES, b"payload")
    for index in (len(good) - 1, len(good) - 6, 20):
        bad = bytearray(good)
        bad[index] ^= 0x01
        assert error_name(bytes(bad)) == "AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE"
        assert error_name(bytes(bad), incremental=True) == "AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE"


def test_length_errors():
    assert error_name(with_prelude(12, 0)) == "AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH"
    assert error_name(with_prelude(20, 8, b"\0" * 8), incremental=True) == \
        "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    assert error_name(with_prelude(17 * 1024 * 1024, 0), incremental=True) == \
        "AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED"
    assert error_name(with_prelude(200 * 1024, 129 * 1024), incremental=True) == \
        "AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED"
    # a buffer longer or shorter than the message it holds
    good = codec.encode_message([], b"abc")
    assert error_name(good + b"\0") == "AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH"
    assert error_name(good[:-1]) == "AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH"
    assert error_name(good[:5]) == "AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH"


def test_header_block_errors():
    def message(block: bytes) -> bytes:
        return with_message_crc(with_prelude(16 + len(block), len(block), block))

    assert error_name(message(b"\x01a\x0a")) == "AWS_ERROR_EVENT_STREAM_MESSAGE_UNKNOWN_HEADER_TYPE"
    assert error_name(message(b"\x01a\xff")) == "AWS_ERROR_EVENT_STREAM_MESSAGE_UNKNOWN_HEADER_TYPE"
    assert error_name(message(b"\x05ab")) == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    assert error_name(message(b"\x01a\x04\x00\x00")) == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    assert error_name(message(b"\x01a\x07\x00\x09abc")) == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    assert error_name(message(b"\x01a\x09" + b"\0" * 15)) == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    assert error_name(message(b"\x01a\x07\x00\x02\xff\xfe")) == "AWS_ERROR_INVALID_UTF8"
    assert error_name(message(b"\x01\xff\x00")) == "AWS_ERROR_INVALID_UTF8"


def test_decoder_is_dead_after_an_error_and_keeps_earlier_messages():
    good = codec.encode_message([Header.from_int32("n", 1)], b"first")
    bad = bytearray(codec.encode_message([], b"second"))
    bad[-1] ^= 1
    decoder = codec.Decoder()
    decoder.feed(good + bytes(bad))
    assert decoder.next_message().payload == b"first"
    with pytest.raises(AwsCrtError):
        decoder.next_message()
    with pytest.raises(AwsCrtError) as info:
        decoder.feed(good)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE"


def test_truncated_input_at_close():
    decoder = codec.Decoder()
    assert list(decoder.messages(codec.encode_message([], b"abc")[:-2])) == []
    with pytest.raises(AwsCrtError) as info:
        decoder.close()
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE"


def test_encode_limits():
    with pytest.raises(ValueError):
        codec.encode_message([Header.from_int32("n" * 255, 1)])
    codec.encode_message([Header.from_int32("n" * 254, 1)])
    with pytest.raises(AwsCrtError) as info:
        codec.encode_message([Header.from_byte_buf("b", b"\0" * 32768)])
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    codec.encode_message([Header.from_byte_buf("b", b"\0" * 32767)])
    with pytest.raises(AwsCrtError) as info:
        codec.encode_message([], b"\0" * (16 * 1024 * 1024))
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED"
    with pytest.raises(ValueError):
        codec.encode_message([Header("x", 1, 42)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.encode_message([Header("x", 5, HeaderType.STRING)])
    with pytest.raises(TypeError):
        codec.encode_message([Header(None, 5, HeaderType.INT32)])  # type: ignore[arg-type]
    # out-of-range ints made without the checked constructors wrap like a C cast
    (h,) = codec.decode_message(codec.encode_message([Header("b", 200, HeaderType.BYTE)])).headers
    assert h.value == -56


# -- fuzz: random and mutated frames give only documented errors ------------------------------------
def check_only_documented(data: bytes) -> None:
    decoder = codec.Decoder()
    try:
        for msg in decoder.messages(data):
            assert isinstance(msg.payload, bytes)
    except AwsCrtError as exc:
        assert exc.name in DOCUMENTED, exc.name


@settings(max_examples=3000 if LONG else 1000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    check_only_documented(data)


@settings(max_examples=5000 if LONG else 1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(header_strategy, max_size=5), st.binary(max_size=50), st.data())
def test_fuzz_mutated_frames(headers, payload, data):
    good = bytearray(codec.encode_message(headers, payload))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "fix_crcs"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del good[data.draw(st.integers(0, len(good) - 1)):]
    elif kind == "insert":
        i = data.draw(st.integers(0, len(good)))
        good[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        # corrupt the body but recompute both CRCs, so the parser proper is exercised
        if len(good) > 16:
            i = data.draw(st.integers(12, len(good) - 5))
            good[i] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            struct.pack_into(">I", good, 4, data.draw(st.integers(0, len(good))))
        struct.pack_into(">I", good, 8, zlib.crc32(good[:8]))
        struct.pack_into(">I", good, len(good) - 4, zlib.crc32(good[:-4]))
    check_only_documented(bytes(good))
    try:
        codec.decode_message(bytes(good))
    except AwsCrtError as exc:
        assert exc.name in DOCUMENTED, exc.name


# -- Header API, with the reference as the oracle ---------------------------------------------------
awscrt_es = pytest.importorskip("awscrt.eventstream")

BOUNDS = {
    "from_byte": (-(2 ** 7), 2 ** 7 - 1),
    "from_int16": (-(2 ** 15), 2 ** 15 - 1),
    "from_int32": (-(2 ** 31), 2 ** 31 - 1),
    "from_int64": (-(2 ** 63), 2 ** 63 - 1),
    "from_timestamp": (-(2 ** 63), 2 ** 63 - 1),
}


def outcome(fn, *args):
    try:
        h = fn(*args)
    except Exception as exc:  # noqa: BLE001 - comparing behaviour
        return type(exc)
    return (h.name, int(h.type), h.value)


@pytest.mark.parametrize("ctor", sorted(BOUNDS))
def test_int_range_checks_match_reference(ctor):
    low, high = BOUNDS[ctor]
    for value in (low - 1, low, 0, high, high + 1, 3.7, "12", True):
        ours = outcome(getattr(Header, ctor), "n", value)
        theirs = outcome(getattr(awscrt_es.Header, ctor), "n", value)
        assert ours == theirs, (ctor, value)
    with pytest.raises(ValueError):
        getattr(Header, ctor)("n", high + 1)


def test_other_constructors_match_reference():
    u = uuid.uuid4()
    cases = [("from_bool", 1), ("from_bool", 0), ("from_bool", ""), ("from_string", 5),
             ("from_string", "s"), ("from_byte_buf", b"b"), ("from_byte_buf", bytearray(b"b")),
             ("from_uuid", u), ("from_uuid", str(u)), ("from_uuid", u.bytes)]
    for ctor, value in cases:
        assert outcome(getattr(Header, ctor), "n", value) == \
            outcome(getattr(awscrt_es.Header, ctor), "n", value), (ctor, value)


def test_value_as_accessors_match_reference():
    makers = [("from_bool", True), ("from_bool", False), ("from_byte", 1), ("from_int16", 2),
              ("from_int32", 3), ("from_int64", 4), ("from_byte_buf", b"5"), ("from_string", "6"),
              ("from_timestamp", 7), ("from_uuid", uuid.UUID(int=8))]
    accessors = ["value_as_bool", "value_as_byte", "value_as_int16", "value_as_int32",
                 "value_as_int64", "value_as_byte_buf", "value_as_string", "value_as_timestamp",
                 "value_as_uuid"]
    for ctor, value in makers:
        ours = getattr(Header, ctor)("n", value)
        theirs = getattr(awscrt_es.Header, ctor)("n", value)
        assert ours.name == theirs.name and int(ours.type) == int(theirs.type)
        for acc in accessors:
            assert _acc(ours, acc) == _acc(theirs, acc), (ctor, acc)
        assert str(ours) == str(theirs)
        assert repr(ours).replace("crtpy", "awscrt") == repr(theirs)


def _acc(header, name):
    try:
        return ("ok", getattr(header, name)())
    except Exception as exc:  # noqa: BLE001
        return ("raised", type(exc))


def test_header_type_enum_matches_reference():
    assert [(m.name, m.value) for m in HeaderType] == [(m.name, m.value) for m in awscrt_es.HeaderType]
    assert f"{HeaderType.UUID}" == f"{awscrt_es.HeaderType.UUID}"
