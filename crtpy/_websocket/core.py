"""The client side of a WebSocket connection as a sans-I/O state machine.

Bytes from the network go in with :meth:`ClientProtocol.receive_data`; :meth:`events`
turns as many of them as the read window allows into events (:class:`FrameBegin`,
:class:`FramePayload`, :class:`FrameComplete`, :class:`CloseReceived`,
:class:`ProtocolFailure`); bytes to write (automatic PONGs, CLOSE replies) come out of
:meth:`data_to_send`.  Outgoing user frames are checked by :meth:`check_send` and
encoded by :func:`crtpy._websocket.frames.encode_frame`.

Behaviour follows the reference runtime:

* PINGs are answered with a PONG carrying the same payload; every frame, control frames
  included, is still reported to the user.
* Unknown opcodes, fragmented control frames, control payloads over 125 bytes, a CLOSE
  payload of 1 byte or with an invalid status code, non-minimal or over-long length
  encodings, fragmentation out of order, and invalid UTF-8 in TEXT messages are protocol
  errors (``AWS_ERROR_HTTP_WEBSOCKET_PROTOCOL_ERROR``).  The reserved bits and a mask on
  server frames are tolerated (the frame is unmasked).
* After a CLOSE arrives nothing more is read.  Unlike the reference, the CLOSE is
  answered (echoing its status code) as RFC 6455 section 5.5.1 requires, so the server
  need not wait for its close timeout.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass

from .frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    KNOWN_OPCODES,
    MAX_CONTROL_PAYLOAD,
    PING,
    PONG,
    TEXT,
    Buffer,
    apply_mask,
    encode_frame,
    is_valid_close_code,
)

PROTOCOL_ERROR = "AWS_ERROR_HTTP_WEBSOCKET_PROTOCOL_ERROR"
CONNECTION_CLOSED = "AWS_ERROR_HTTP_CONNECTION_CLOSED"
INVALID_STATE = "AWS_ERROR_INVALID_STATE"
CLOSE_FRAME_SENT = "AWS_ERROR_HTTP_WEBSOCKET_CLOSE_FRAME_SENT"


@dataclass(slots=True)
class FrameBegin:
    opcode: int
    payload_length: int
    fin: bool


@dataclass(slots=True)
class FramePayload:
    data: bytes


@dataclass(slots=True)
class FrameComplete:
    error: str | None = None


@dataclass(slots=True)
class CloseReceived:
    code: int | None
    reason: bytes


@dataclass(slots=True)
class ProtocolFailure:
    """The connection must end with error ``error`` (a CLOSE has been queued if allowed)."""
    error: str
    detail: str


Event = FrameBegin | FramePayload | FrameComplete | CloseReceived | ProtocolFailure


class SendError(Exception):
    """An outgoing frame that may not be sent now; ``fatal`` ones end the connection."""

    def __init__(self, name: str, detail: str, fatal: bool) -> None:
        super().__init__(detail)
        self.name = name
        self.fatal = fatal


_HEADER_MAX = 14


class ClientProtocol:
    """State of one client connection after the handshake."""

    def __init__(self, *, manage_read_window: bool = False, initial_read_window: int = 0) -> None:
        self._buf = bytearray()
        self._manage_window = manage_read_window
        self._window = initial_read_window if manage_read_window else 0
        # incoming frame in progress
        self._in_frame = False
        self._opcode = 0
        self._fin = False
        self._remaining = 0
        self._mask: bytes | None = None
        self._mask_offset = 0
        # incoming message state
        self._expect_continuation = False
        self._utf8: codecs.IncrementalDecoder | None = None
        self._text_message = False
        # connection state
        self.close_received = False
        self.close_sent = False
        self.failed: str | None = None
        self.eof = False
        self._out: list[Buffer] = []
        # outgoing message state
        self._out_fragmented = False

    # -- read window ---------------------------------------------------------------------
    @property
    def read_window(self) -> int:
        return self._window

    def increment_read_window(self, size: int) -> None:
        if self._manage_window:
            self._window += size

    def wants_data(self) -> bool:
        """False while a data frame's payload is blocked on an exhausted read window (the
        driver then stops reading from the socket)."""
        if self.failed is not None or self.close_received:
            return True  # keep reading so that EOF is seen; input is discarded anyway
        return not self._manage_window or self._window > 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    # -- input ---------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.close_received or self.failed is not None:
            return
        self._buf += data

    def receive_eof(self) -> list[Event]:
        """The peer closed the connection: finish the frame in progress with an error."""
        self.eof = True
        events: list[Event] = []
        if self._in_frame and self.failed is None:
            self._in_frame = False
            events.append(FrameComplete(CONNECTION_CLOSED))
        self._buf.clear()
        return events

    @staticmethod
    def _is_data(opcode: int) -> bool:
        return opcode <= BINARY

    def _fail(self, events: list[Event], detail: str, in_frame: bool = False) -> None:
        if in_frame:
            events.append(FrameComplete(PROTOCOL_ERROR))
            self._in_frame = False
        self.failed = PROTOCOL_ERROR
        self._buf.clear()
        if not self.close_sent:
            self.close_sent = True
            self._out.extend(encode_frame(CLOSE, b""))
        events.append(ProtocolFailure(PROTOCOL_ERROR, detail))

    def events(self, limit: int = 1 << 30) -> list[Event]:
        """Process buffered input; return the events, at most about ``limit`` payload bytes."""
        events: list[Event] = []
        delivered = 0
        buf = self._buf
        while self.failed is None and not self.close_received and delivered < limit:
            if not self._in_frame:
                if not self._parse_header(events):
                    break
                continue
            # payload of a data frame
            n = min(len(buf), self._remaining, limit - delivered)
            if self._manage_window and self._is_data(self._opcode):
                n = min(n, self._window)
            if n <= 0 and self._remaining > 0:
                break
            if n > 0:
                if n == len(buf):
                    chunk = bytes(buf)
                    buf.clear()
                else:
                    with memoryview(buf) as mv:
                        chunk = bytes(mv[:n])
                    del buf[:n]
                if self._mask is not None:
                    chunk = bytes(apply_mask(chunk, self._mask, self._mask_offset))
                    self._mask_offset += n
                if self._utf8 is not None and not self._valid_utf8(chunk, final=False):
                    self._fail(events, "invalid UTF-8 in TEXT message", in_frame=True)
                    break
                self._remaining -= n
                if self._manage_window:
                    self._window -= n
                delivered += n
                events.append(FramePayload(chunk))
            if self._remaining == 0:
                self._finish_data_frame(events)
        return events

    def _valid_utf8(self, chunk: bytes, final: bool) -> bool:
        dec = self._utf8
        assert dec is not None
        if not final and chunk.isascii() and not dec.getstate()[0]:
            return True
        try:
            dec.decode(chunk, final)
        except UnicodeDecodeError:
            return False
        return True

    def _finish_data_frame(self, events: list[Event]) -> None:
        if self._fin and self._utf8 is not None:
            ok = self._valid_utf8(b"", final=True)
            self._utf8 = None
            if not ok:
                self._fail(events, "TEXT message ends inside a UTF-8 sequence", in_frame=True)
                return
        self._in_frame = False
        events.append(FrameComplete(None))

    def _parse_header(self, events: list[Event]) -> bool:
        """Parse (and for control frames, fully handle) the next frame.  False if more
        bytes are needed."""
        buf = self._buf
        if len(buf) < 2:
            return False
        b0, b1 = buf[0], buf[1]
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        if opcode not in KNOWN_OPCODES:
            self._fail(events, f"reserved opcode {opcode}")
            return False
        control = opcode >= CLOSE
        if control:
            if not fin:
                self._fail(events, "fragmented control frame")
                return False
        else:
            is_cont = opcode == CONTINUATION
            if is_cont != self._expect_continuation:
                self._fail(events, "CONTINUATION without a message in progress" if is_cont
                           else "new message before the previous one ended")
                return False
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return False
            length = int.from_bytes(buf[2:4], "big")
            pos = 4
            if length < 126:
                self._fail(events, "non-minimal payload length")
                return False
        elif length == 127:
            if len(buf) < 10:
                return False
            length = int.from_bytes(buf[2:10], "big")
            pos = 10
            if length >> 63:
                self._fail(events, "payload length has its most significant bit set")
                return False
            if length < 0x10000:
                self._fail(events, "non-minimal payload length")
                return False
        if control and length > MAX_CONTROL_PAYLOAD:
            self._fail(events, "control frame payload over 125 bytes")
            return False
        if opcode == CLOSE and length == 1:
            self._fail(events, "CLOSE payload of 1 byte")
            return False
        mask = None
        if masked:
            if len(buf) < pos + 4:
                return False
            mask = bytes(buf[pos:pos + 4])
            pos += 4
        if control:
            if len(buf) < pos + length:
                return False  # control frames are handled whole
            payload = bytes(buf[pos:pos + length])
            del buf[:pos + length]
            if mask is not None:
                payload = bytes(apply_mask(payload, mask))
            self._control_frame(events, opcode, payload)
            return True
        del buf[:pos]
        self._expect_continuation = not fin
        if opcode == TEXT:
            self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._in_frame = True
        self._opcode = opcode
        self._fin = fin
        self._remaining = length
        self._mask = mask
        self._mask_offset = 0
        events.append(FrameBegin(opcode, length, fin))
        if length == 0:
            self._finish_data_frame(events)
        return True

    def _control_frame(self, events: list[Event], opcode: int, payload: bytes) -> None:
        begin = FrameBegin(opcode, len(payload), True)
        if opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if code is not None and not is_valid_close_code(code):
                events.append(begin)
                self._in_frame = True
                self._fail(events, f"invalid CLOSE status code {code}", in_frame=True)
                return
            events.append(begin)
            if payload:
                events.append(FramePayload(payload))
            events.append(FrameComplete(None))
            self.close_received = True
            self._buf.clear()
            if not self.close_sent:
                self.close_sent = True
                self._out.extend(encode_frame(CLOSE, payload[:2]))
            events.append(CloseReceived(code, payload[2:]))
            return
        events.append(begin)
        if payload:
            events.append(FramePayload(payload))
        events.append(FrameComplete(None))
        if opcode == PING and not self.close_sent:
            self._out.extend(encode_frame(PONG, payload))

    # -- output --------------------------------------------------------------------------
    def data_to_send(self) -> list[Buffer]:
        out, self._out = self._out, []
        return out

    def close_frame(self) -> list[Buffer]:
        """The CLOSE frame a local shutdown sends (empty payload), or [] if one was sent."""
        if self.close_sent:
            return []
        self.close_sent = True
        return encode_frame(CLOSE, b"")

    def check_send(self, opcode: int, fin: bool) -> None:
        """Account for an outgoing frame about to be written; raise :class:`SendError` if it
        may not be sent."""
        if self.close_sent:
            raise SendError(CLOSE_FRAME_SENT, "a CLOSE frame was already sent", fatal=False)
        if opcode <= BINARY:
            if (opcode == CONTINUATION) != self._out_fragmented:
                raise SendError(INVALID_STATE,
                                "CONTINUATION frame without a fragmented message in progress"
                                if opcode == CONTINUATION else
                                "new data frame before the fragmented message was finished",
                                fatal=True)
            self._out_fragmented = not fin
        elif opcode == CLOSE:
            self.close_sent = True
CLOSE_OPCODE = 0x8
