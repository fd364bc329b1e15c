"""crtpy.websocket against a misbehaving server, checked against the reference awscrt.

Each case scripts the server's bytes (handshake response and frames), then half-closes
the socket so every client run ends.  The events crtpy reports must be the expected
ones, and the same as the reference's when the reference is installed.
"""
from __future__ import annotations

import pytest
from helpers.ws_server import RawServer, Recorder, server_frame, upgrade_response

import crtpy.websocket as W

try:
    import awscrt.websocket as REF
except ImportError:  # pragma: no cover - the reference is installed in the dev venv
    REF = None

PROTO = "AWS_ERROR_HTTP_WEBSOCKET_PROTOCOL_ERROR"
UPGRADE = "AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE"
CLOSED = "AWS_IO_SOCKET_CLOSED"


def ok(k):
    return upgrade_response(k)


# name -> (server script, expected events)
CASES = {
    "bad_accept_key": (lambda k: upgrade_response(k, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                       [("setup", UPGRADE, 101)]),
    "missing_accept": (lambda k: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n",
                       [("setup", UPGRADE, 101)]),
    "status_404_with_body": (lambda k: b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
                             [("setup", UPGRADE, 404)]),
    "status_200_chunked": (lambda k: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"3\r\nabc\r\n0\r\n\r\n",
                           [("setup", UPGRADE, 200)]),
    "not_http": (lambda k: b"garbage\r\n\r\n", [("setup", "AWS_ERROR_HTTP_PROTOCOL_ERROR", None)]),
    "eof_in_handshake": (lambda k: b"HTTP/1.1 101 Swi", [("setup", CLOSED, None)]),
    "masked_server_frame": (lambda k: ok(k) + server_frame(2, b"abc", mask=b"\x01\x02\x03\x04"),
                            [("setup", None, 101), ("begin", "BINARY", 3, True),
                             ("payload", b"abc"), ("complete", None), ("shutdown", CLOSED)]),
    "invalid_utf8_text": (lambda k: ok(k) + server_frame(1, b"ab\xff\xfecd"),
                          [("setup", None, 101), ("begin", "TEXT", 6, True),
                           ("complete", PROTO), ("shutdown", PROTO)]),
    "invalid_utf8_across_fragments": (
        lambda k: ok(k) + server_frame(1, b"ab\xe2\x82", fin=False) + server_frame(0, b"\xacz")
        + server_frame(1, b"\xe2\x82", fin=False) + server_frame(0, b"x"),
        [("setup", None, 101), ("begin", "TEXT", 4, False), ("payload", b"ab\xe2\x82"),
         ("complete", None), ("begin", "CONTINUATION", 2, True), ("payload", b"\xacz"),
         ("complete", None), ("begin", "TEXT", 2, False), ("payload", b"\xe2\x82"),
         ("complete", None), ("begin", "CONTINUATION", 1, True), ("complete", PROTO),
         ("shutdown", PROTO)]),
    "text_ends_mid_utf8": (lambda k: ok(k) + server_frame(1, b"ab\xe2\x82"),
                           [("setup", None, 101), ("begin", "TEXT", 4, True),
                            ("payload", b"ab\xe2\x82"), ("complete", PROTO), ("shutdown", PROTO)]),
    "oversized_ping": (lambda k: ok(k) + server_frame(9, b"x" * 126),
                       [("setup", None, 101), ("shutdown", PROTO)]),
    "oversized_close": (lambda k: ok(k) + server_frame(8, b"\x03\xe8" + b"x" * 124),
                        [("setup", None, 101), ("shutdown", PROTO)]),
    "fragmented_ping": (lambda k: ok(k) + server_frame(9, b"x", fin=False),
                        [("setup", None, 101), ("shutdown", PROTO)]),
    "reserved_opcode_3": (lambda k: ok(k) + server_frame(3, b"x"),
                          [("setup", None, 101), ("shutdown", PROTO)]),
    "reserved_opcode_11": (lambda k: ok(k) + server_frame(11, b"x"),
                           [("setup", None, 101), ("shutdown", PROTO)]),
    "continuation_first": (lambda k: ok(k) + server_frame(0, b"x"),
                           [("setup", None, 101), ("shutdown", PROTO)]),
    "new_message_mid_fragment": (
        lambda k: ok(k) + server_frame(1, b"x", fin=False) + server_frame(1, b"y"),
        [("setup", None, 101), ("begin", "TEXT", 1, False), ("payload", b"x"),
         ("complete", None), ("shutdown", PROTO)]),
    "non_minimal_length": (lambda k: ok(k) + bytes([0x82, 126, 0, 5]) + b"hello",
                           [("setup", None, 101), ("shutdown", PROTO)]),
    "length_msb_set": (lambda k: ok(k) + bytes([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 5]) + b"hello",
                       [("setup", None, 101), ("shutdown", PROTO)]),
    "close_payload_one_byte": (lambda k: ok(k) + server_frame(8, b"x"),
                               [("setup", None, 101), ("shutdown", PROTO)]),
    "close_invalid_status": (lambda k: ok(k) + server_frame(8, (1005).to_bytes(2, "big")),
                             [("setup", None, 101), ("begin", "CLOSE", 2, True),
                              ("complete", PROTO), ("shutdown", PROTO)]),
    "close_then_garbage_ignored": (
        lambda k: ok(k) + server_frame(8, (1000).to_bytes(2, "big")) + server_frame(3, b"bad"),
        [("setup", None, 101), ("begin", "CLOSE", 2, True), ("payload", b"\x03\xe8"),
         ("complete", None), ("shutdown", CLOSED)]),
    "socket_closed_mid_frame": (lambda k: ok(k) + server_frame(2, b"abcdef", length=100),
                                [("setup", None, 101), ("begin", "BINARY", 100, True),
                                 ("payload", b"abcdef"),
                                 ("complete", "AWS_ERROR_HTTP_CONNECTION_CLOSED"),
                                 ("shutdown", CLOSED)]),
    "socket_closed_after_handshake": (lambda k: ok(k), [("setup", None, 101), ("shutdown", CLOSED)]),
    "frames_with_handshake": (
        lambda k: ok(k) + server_frame(2, b"abc") + server_frame(9, b"p"),
        [("setup", None, 101), ("begin", "BINARY", 3, True), ("payload", b"abc"),
         ("complete", None), ("begin", "PING", 1, True), ("payload", b"p"), ("complete", None),
         ("shutdown", CLOSED)]),
}


def run_case(module, script):
    with RawServer(lambda headers, key: script(key), close_after=True) as srv:
        rec = Recorder(module).connect(srv.port)
        d = rec.wait_setup()
        if d.exception is None:
            rec.wait_shutdown()
        body = d.handshake_response_body
        del d
        if module is W:
            rec.close_and_release()
        else:
            rec.forget()
        assert srv.client_closed.wait(10)
        return rec.events, body, bytes(srv.received)


@pytest.mark.parametrize("name", list(CASES))
def test_misbehaving_server(name, leak_check):
    script, expected = CASES[name]
    events, body, sent = run_case(W, script)
    assert events == expected
    if name == "status_404_with_body":
        assert body == b"nope!"
    if name == "status_200_chunked":
        assert body == b"abc"
    if expected[-1] == ("shutdown", PROTO):
        # a CLOSE frame (masked, without status) went out before the socket closed
        assert sent[:2] == b"\x88\x80"
    if name == "frames_with_handshake":
        # the PING was answered with a masked PONG carrying the same payload
        assert sent[0] == 0x8A and sent[1] == 0x81
        assert bytes([sent[6] ^ sent[2]]) == b"p"


@pytest.mark.skipif(REF is None, reason="reference awscrt not installed")
@pytest.mark.parametrize("name", [n for n in CASES if n != "status_200_chunked"])
def test_same_events_as_reference(name, leak_check):
    script, _ = CASES[name]
    ours, our_body, _ = run_case(W, script)
    theirs, their_body, _ = run_case(REF, script)
    assert ours == theirs
    assert our_body == their_body


# (offered subprotocols, the server's Sec-WebSocket-Protocol / extension line, accepted?)
PROTOCOL_CASES = {
    "unrequested_subprotocol": (None, "Sec-WebSocket-Protocol: mqtt\r\n", False),
    "other_subprotocol": ("mqtt", "Sec-WebSocket-Protocol: chat\r\n", False),
    "one_of_offered": ("mqtt, x", "Sec-WebSocket-Protocol: x\r\n", True),
    "offered_but_none_chosen": ("mqtt", "", False),
    "unrequested_extension": (None, "Sec-WebSocket-Extensions: permessage-deflate\r\n", False),
}


def run_protocol_case(module, offered, line):
    with RawServer(lambda headers, key: upgrade_response(key, extra=line), close_after=True) as srv:
        req = module.create_handshake_request(host="127.0.0.1")
        if offered:
            req.headers.add("Sec-WebSocket-Protocol", offered)
        rec = Recorder(module).connect(srv.port, request=req)
        rec.wait_setup()
        if rec.setup_data.exception is None:
            rec.wait_shutdown()
        events = rec.events
        if module is W:
            rec.close_and_release()
        else:
            rec.forget()
        return events


@pytest.mark.parametrize("name", list(PROTOCOL_CASES))
def test_subprotocol_and_extension_checks(name, leak_check):
    offered, line, accepted = PROTOCOL_CASES[name]
    events = run_protocol_case(W, offered, line)
    assert events[0] == ("setup", None if accepted else UPGRADE, 101)
    if REF is not None:
        assert events == run_protocol_case(REF, offered, line)
