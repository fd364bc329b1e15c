"""The sans-I/O WebSocket core: masking, frame encoding/decoding, the client state
machine and the handshake parser, with hypothesis."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crtpy._websocket import core, frames, handshake
from crtpy._websocket.frames import apply_mask, encode_frame, encode_header
from crtpy._websocket.handshake import HandshakeError, ResponseParser, accept_for, check_upgrade

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"
EXAMPLES = 2000 if LONG else 150
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def naive_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ mask[(i + offset) % 4] for i, b in enumerate(data))


def server_encode(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    head = encode_header(opcode, len(payload), fin, mask)
    return head + (apply_mask(payload, mask) if mask else payload)


def feed(proto: core.ClientProtocol, data: bytes, cuts: list[int]) -> list:
    events = []
    pos = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]:
        proto.receive_data(data[pos:cut])
        events += proto.events()
        pos = cut
    return events


# ------------------------------------------------------------------ masking ---------------
@fuzz
@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_apply_mask_matches_definition(data, mask, offset):
    assert apply_mask(data, mask, offset) == naive_mask(data, mask, offset)
    assert apply_mask(apply_mask(data, mask, offset), mask, offset) == data


def test_apply_mask_in_pieces_equals_whole():
    data = os.urandom(10_001)
    mask = b"\x12\x34\x56\x78"
    whole = apply_mask(data, mask)
    pieces = apply_mask(data[:3], mask, 0) + apply_mask(data[3:4097], mask, 3) + apply_mask(data[4097:], mask, 4097)
    assert whole == pieces
    assert apply_mask(memoryview(data), mask) == whole


def test_encode_header_lengths():
    assert encode_header(2, 125, True, None) == b"\x82\x7d"
    assert encode_header(2, 126, True, None) == b"\x82\x7e\x00\x7e"
    assert encode_header(1, 65535, False, None) == b"\x01\x7e\xff\xff"
    assert encode_header(2, 65536, True, None) == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert encode_header(9, 0, True, b"abcd") == b"\x89\x80abcd"
    with pytest.raises(ValueError):
        encode_header(2, 2**63, True, None)


def test_client_frames_are_masked():
    chunks = encode_frame(frames.BINARY, b"hello", True, mask=b"\x01\x02\x03\x04")
    raw = b"".join(chunks)
    assert raw[:2] == b"\x82\x85" and raw[2:6] == b"\x01\x02\x03\x04"
    assert naive_mask(raw[6:], b"\x01\x02\x03\x04") == b"hello"
    # a fresh random key per frame
    a = b"".join(encode_frame(frames.TEXT, b"x" * 8))
    b = b"".join(encode_frame(frames.TEXT, b"x" * 8))
    assert a[2:6] != b[2:6] or a[6:] != b[6:]


# ------------------------------------------------------------------ decoding --------------
frame_st = st.one_of(
    st.tuples(st.sampled_from([frames.BINARY, frames.TEXT]), st.binary(max_size=70_000).map(bytes)),
    st.tuples(st.sampled_from([frames.PING, frames.PONG]), st.binary(max_size=125)),
)


@st.composite
def messages(draw):
    """A list of (opcode, payload, fin) server frames forming valid messages, with control
    frames interleaved."""
    out = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["bin", "text", "ctrl"]))
        if kind == "ctrl":
            out.append((draw(st.sampled_from([frames.PING, frames.PONG])), draw(st.binary(max_size=125)), True))
            continue
        if kind == "text":
            data = draw(st.text(max_size=200)).encode("utf-8")
            op = frames.TEXT
        else:
            data = draw(st.binary(max_size=3000))
            op = frames.BINARY
        n = draw(st.integers(1, 4))
        size = max(1, len(data) // n)
        parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        for i, part in enumerate(parts):
            out.append((op if i == 0 else frames.CONTINUATION, part, i == len(parts) - 1))
    return out


@fuzz
@given(messages(), st.booleans(), st.lists(st.integers(0, 20_000), max_size=8))
def test_round_trip_any_split(msgs, masked, cuts):
    wire = b"".join(server_encode(op, p, fin, b"\x0f\x1e\x2d\x3c" if masked else None)
                    for op, p, fin in msgs)
    proto = core.ClientProtocol()
    events = feed(proto, wire, cuts)
    got = []
    cur = None
    for ev in events:
        if isinstance(ev, core.FrameBegin):
            cur = [ev.opcode, bytearray(), ev.fin]
        elif isinstance(ev, core.FramePayload):
            cur[1] += ev.data
        elif isinstance(ev, core.FrameComplete):
            assert ev.error is None
            got.append((cur[0], bytes(cur[1]), cur[2]))
        else:  # pragma: no cover
            raise AssertionError(ev)  # noqa: TRY004
    assert got == msgs
    # every PING was answered with a PONG of the same payload
    pings = [p for op, p, _ in msgs if op == frames.PING]
    out = b"".join(proto.data_to_send())
    pongs = []
    i = 0
    while i < len(out):
        assert out[i] == 0x8A and out[i + 1] & 0x80
        n = out[i + 1] & 0x7F
        key = out[i + 2:i + 6]
        pongs.append(naive_mask(out[i + 6:i + 6 + n], key))
        i += 6 + n
    assert pongs == pings


@fuzz
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=6))
def test_random_bytes_only_documented_outcomes(data, cuts):
    proto = core.ClientProtocol()
    events = feed(proto, data, cuts)
    events += proto.receive_eof()
    allowed = (core.FrameBegin, core.FramePayload, core.FrameComplete, core.CloseReceived,
               core.ProtocolFailure)
    open_frames = 0
    for ev in events:
        assert isinstance(ev, allowed)
        if isinstance(ev, core.FrameBegin):
            open_frames += 1
        elif isinstance(ev, core.FrameComplete):
            open_frames -= 1
            assert ev.error in (None, core.PROTOCOL_ERROR, core.CONNECTION_CLOSED)
        elif isinstance(ev, core.ProtocolFailure):
            assert ev.error == core.PROTOCOL_ERROR
    assert open_frames == 0  # every begun frame completes
    if proto.failed:
        assert isinstance(events[-1], (core.ProtocolFailure, core.FrameComplete))


@pytest.mark.parametrize("wire", [
    bytes([0x83, 0]),                        # reserved data opcode
    bytes([0x8B, 0]),                        # reserved control opcode
    bytes([0x09, 0]),                        # fragmented PING
    bytes([0x89, 126, 0, 126]) + b"x" * 126,  # PING over 125 bytes
    bytes([0x80, 1]) + b"x",                 # CONTINUATION with no message
    bytes([0x82, 126, 0, 1]) + b"x",         # non-minimal 16-bit length
    bytes([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 1]) + b"x",  # non-minimal 64-bit length
    bytes([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),     # length with the top bit set
    bytes([0x88, 1]) + b"x",                 # CLOSE payload of one byte
    bytes([0x88, 2]) + (999).to_bytes(2, "big"),  # invalid close status
    bytes([0x01, 1]) + b"a" + bytes([0x82, 0]),   # new message inside a fragmented one
    bytes([0x81, 2]) + b"\xc3\x28",          # invalid UTF-8
])
def test_protocol_errors(wire):
    proto = core.ClientProtocol()
    proto.receive_data(wire)
    events = proto.events()
    assert isinstance(events[-1], core.ProtocolFailure)
    assert events[-1].error == "AWS_ERROR_HTTP_WEBSOCKET_PROTOCOL_ERROR"
    # an empty CLOSE goes out, and then nothing more may be sent
    assert b"".join(proto.data_to_send())[:2] == b"\x88\x80"
    with pytest.raises(core.SendError):
        proto.check_send(frames.TEXT, True)


def test_reserved_bits_and_close_reason_tolerated():
    proto = core.ClientProtocol()
    proto.receive_data(bytes([0xC2, 1]) + b"z" + bytes([0x88, 3]) + b"\x03\xe8\xff")
    events = proto.events()
    assert not any(isinstance(e, core.ProtocolFailure) for e in events)
    assert isinstance(events[-1], core.CloseReceived) and events[-1].code == 1000
    # the CLOSE is answered with its status code
    reply = b"".join(proto.data_to_send())
    assert reply[:2] == b"\x88\x82" and naive_mask(reply[6:], reply[2:6]) == b"\x03\xe8"


@pytest.mark.parametrize("code, valid", [(999, False), (1000, True), (1003, True), (1004, False),
                                         (1005, False), (1006, False), (1007, True), (1014, True),
                                         (1015, False), (2999, False), (3000, True), (4999, True),
                                         (5000, False)])
def test_close_codes(code, valid):
    assert frames.is_valid_close_code(code) is valid


def test_read_window_limits_data_payload():
    proto = core.ClientProtocol(manage_read_window=True, initial_read_window=3)
    proto.receive_data(server_encode(frames.BINARY, b"0123456789") + server_encode(frames.PING, b"pi"))
    events = proto.events()
    assert [type(e) for e in events] == [core.FrameBegin, core.FramePayload]
    assert events[1].data == b"012"
    assert not proto.wants_data()
    proto.increment_read_window(100)
    assert proto.wants_data()
    events = proto.events()
    assert events[0].data == b"3456789"
    assert isinstance(events[1], core.FrameComplete)
    assert [type(e) for e in events[2:]] == [core.FrameBegin, core.FramePayload, core.FrameComplete]
    assert proto.read_window == 93  # control payload does not count


def test_outgoing_fragmentation_rules():
    proto = core.ClientProtocol()
    with pytest.raises(core.SendError) as e:
        proto.check_send(frames.CONTINUATION, True)
    assert e.value.name == "AWS_ERROR_INVALID_STATE" and e.value.fatal
    proto = core.ClientProtocol()
    proto.check_send(frames.TEXT, False)
    proto.check_send(frames.PING, True)
    with pytest.raises(core.SendError):
        proto.check_send(frames.BINARY, True)
    proto = core.ClientProtocol()
    proto.check_send(frames.TEXT, False)
    proto.check_send(frames.CONTINUATION, True)
    proto.check_send(frames.CLOSE, True)
    with pytest.raises(core.SendError) as e:
        proto.check_send(frames.TEXT, True)
    assert e.value.name == "AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT" and not e.value.fatal


# ------------------------------------------------------------------ handshake ------------
def test_accept_key_rfc_example():
    # the example of RFC 6455 section 1.3
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_response_parser_101_with_frames():
    key = handshake.new_key()
    p = ResponseParser()
    resp = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n\r\n").encode() + b"\x82\x01z"
    for i in range(len(resp)):
        p.feed(resp[i:i + 1])
    assert p.done and p.status == 101 and p.leftover == b"\x82\x01z"
    check_upgrade(p.status, p.headers, key)
    with pytest.raises(HandshakeError):
        check_upgrade(p.status, p.headers, handshake.new_key())


@fuzz
@given(st.binary(max_size=500), st.lists(st.integers(0, 500), max_size=5))
def test_response_parser_random_bytes(data, cuts):
    p = ResponseParser()
    pos = 0
    try:
        for cut in sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]:
            p.feed(data[pos:cut])
            pos = cut
        p.feed_eof()
    except HandshakeError as e:
        assert e.name in ("AWS_ERROR_HTTP_PROTOCOL_ERROR", "AWS_IO_SOCKET_CLOSED")
    else:
        assert p.done


def test_encode_request_rejects_injection():
    assert handshake.encode_request("GET", "/a", [("Host", "h")]) == b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    with pytest.raises(HandshakeError):
        handshake.encode_request("GET", "/a", [("Host", "h\r\nEvil: 1")])
    with pytest.raises(HandshakeError):
        handshake.encode_request("GET", "/a b", [])
