"""Sans-I/O codec for event-stream messages (bytes in, messages out; no sockets).

Wire format of one message (all integers big-endian)::

    total_length   u32   length of the whole message, prelude and trailer included
    headers_length u32   length of the header block
    prelude_crc    u32   CRC32 of the 8 bytes above
    headers        headers_length bytes
    payload        total_length - headers_length - 16 bytes
    message_crc    u32   CRC32 of everything before it (prelude CRC included)

Each header is ``name_len u8, name (UTF-8), type u8, value`` where the value is empty
for booleans, 1/2/4/8 bytes for BYTE/INT16/INT32/INT64 and TIMESTAMP, 16 bytes for a
UUID, and ``u16 length + bytes`` for BYTE_BUF and STRING.

Decoding is strict: the decoder never yields part of a message.  Errors it raises (all
:class:`crtpy.exceptions.AwsCrtError`):

- ``AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE``: prelude CRC mismatch
- ``AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE``: message CRC mismatch
- ``AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED``: total length above 16 MiB or
  header block above 128 KiB
- ``AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH``: total length below the 16-byte
  minimum, or (one-shot :func:`decode_message`) a buffer that is not exactly one message
- ``AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN``: header block longer than the
  message allows, or a header running past the end of the block
- ``AWS_ERROR_EVENT_STREAM_MESSAGE_UNKNOWN_HEADER_TYPE``: header type byte above 9
- ``AWS_ERROR_INVALID_UTF8``: a header name or STRING value that is not UTF-8
- ``AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE``: use of a decoder after it
  failed, or end of input in the middle of a message (:meth:`Decoder.close`)

Encoding errors, as the reference reports them: ValueError for a header name of more
than 254 bytes or an unknown type; TypeError for a value of the wrong Python type;
``AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN`` for a BYTE_BUF/STRING value above
32767 bytes.  Integer values out of their type's range are truncated like a C cast.  A
header block above 128 KiB or a message above 16 MiB gives
``AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED`` (crtpy refuses to send what its
own decoder, and botocore's, would refuse to receive).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Union
from uuid import UUID

from .._errors import error
from ..eventstream import Header, HeaderType

PRELUDE_LENGTH = 12
TRAILER_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + TRAILER_LENGTH
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
MAX_HEADERS_LENGTH = 128 * 1024
MAX_HEADER_NAME_LENGTH = 254  # as the reference: names of 255 bytes are refused
MAX_HEADER_VALUE_LENGTH = 32767

_PRELUDE = struct.Struct(">III")
_LENGTHS = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")

# Fixed-size values: struct for each type (BYTE..INT64, TIMESTAMP).
_FIXED = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.INT16: struct.Struct(">h"),
    HeaderType.INT32: struct.Struct(">i"),
    HeaderType.INT64: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}
_FIXED_BY_INT = {int(k): v for k, v in _FIXED.items()}
_TYPES = tuple(HeaderType)
_BYTE_BUF = int(HeaderType.BYTE_BUF)
_STRING = int(HeaderType.STRING)
_UUID = int(HeaderType.UUID)
_BOOL_TRUE = int(HeaderType.BOOL_TRUE)
_BOOL_FALSE = int(HeaderType.BOOL_FALSE)
_MAX_TYPE = int(HeaderType.UUID)

BytesLike = Union[bytes, bytearray, memoryview]  # noqa: UP007 - a runtime alias


class Message(NamedTuple):
    """One decoded message."""

    headers: list[Header]
    payload: bytes


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------
_WIDTH_BITS = {HeaderType.BYTE: 8, HeaderType.INT16: 16, HeaderType.INT32: 32,
               HeaderType.INT64: 64, HeaderType.TIMESTAMP: 64}


def wrap_int(value: int, bits: int) -> int:
    """Two's-complement truncation of ``value`` to a signed ``bits``-bit integer (what a
    C cast does; the reference sends out-of-range header values this way)."""
    half = 1 << (bits - 1)
    return ((value + half) & ((1 << bits) - 1)) - half


def _encode_header(out: bytearray, header: Header) -> None:
    name = header.name
    if isinstance(name, str):
        name_bytes = name.encode("utf-8")
    elif isinstance(name, (bytes, bytearray)):
        name_bytes = bytes(name)
    else:
        raise TypeError(f"header name must be str, not {type(name).__name__}")
    if len(name_bytes) > MAX_HEADER_NAME_LENGTH:
        raise ValueError(f"header name is {len(name_bytes)} bytes, the limit is {MAX_HEADER_NAME_LENGTH}")
    try:
        htype = HeaderType(header.type)
    except ValueError:
        raise ValueError(f"header {name!r} has an invalid type {header.type!r}") from None
    out.append(len(name_bytes))
    out += name_bytes
    out.append(htype)
    value = header.value
    fixed = _FIXED.get(htype)
    if fixed is not None:
        if not isinstance(value, int):
            raise TypeError(f"header {name!r} of type {htype.name} needs an int value")
        out += fixed.pack(wrap_int(int(value), _WIDTH_BITS[htype]))
    elif htype == HeaderType.BYTE_BUF or htype == HeaderType.STRING:
        if htype == HeaderType.STRING and isinstance(value, str):
            data: BytesLike = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = value
        else:
            raise TypeError(f"header {name!r} of type {htype.name} needs a "
                            f"{'str' if htype == HeaderType.STRING else 'bytes-like'} value")
        size = memoryview(data).nbytes
        if size > MAX_HEADER_VALUE_LENGTH:
            raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN",
                        f"header {name!r} value is {size} bytes, the limit is {MAX_HEADER_VALUE_LENGTH}")
        out += _U16.pack(size)
        out += data
    elif htype == HeaderType.UUID:
        if isinstance(value, UUID):
            out += value.bytes
        elif isinstance(value, (bytes, bytearray)) and len(value) == 16:
            out += value
        else:
            raise TypeError(f"header {name!r} of type UUID needs a uuid.UUID value")
    # BOOL_TRUE / BOOL_FALSE: the type byte is the value.


def encode_headers(headers: Iterable[Header] | None) -> bytes:
    """Encode a header block."""
    out = bytearray()
    if headers:
        for header in headers:
            if not isinstance(header, Header):
                raise TypeError(f"expected crtpy.eventstream.Header, got {type(header).__name__}")
            _encode_header(out, header)
    return bytes(out)


def encode_message_parts(headers: Iterable[Header] | None,
                         payload: BytesLike | None = None) -> tuple[bytes, BytesLike, bytes]:
    """Encode a message as three buffers (prelude+headers, payload, trailer) so that a
    large payload is written without being copied."""
    return encode_raw_parts(encode_headers(headers), payload)


def encode_raw_parts(header_block: bytes,
                     payload: BytesLike | None = None) -> tuple[bytes, BytesLike, bytes]:
    """Like :func:`encode_message_parts`, with an already encoded header block."""
    if len(header_block) > MAX_HEADERS_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED",
                    f"header block is {len(header_block)} bytes, the limit is {MAX_HEADERS_LENGTH}")
    if payload is None:
        payload = b""
    elif not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
    if isinstance(payload, memoryview) and not payload.contiguous:
        payload = payload.tobytes()
    payload_len = memoryview(payload).nbytes
    total = MIN_MESSAGE_LENGTH + len(header_block) + payload_len
    if total > MAX_MESSAGE_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED",
                    f"message is {total} bytes, the limit is {MAX_MESSAGE_LENGTH}")
    lengths = _LENGTHS.pack(total, len(header_block))
    head = lengths + _U32.pack(zlib.crc32(lengths)) + header_block
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head, payload, _U32.pack(crc)


def encode_message(headers: Iterable[Header] | None, payload: BytesLike | None = None) -> bytes:
    """Encode one complete message."""
    head, payload, trailer = encode_message_parts(headers, payload)
    return b"".join((head, payload, trailer))


# ---------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------
def _check_prelude(buf: BytesLike, pos: int) -> tuple[int, int]:
    """Validate the 12-byte prelude at ``pos``; return (total_length, headers_length)."""
    total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
    with memoryview(buf) as view:
        actual = zlib.crc32(view[pos:pos + 8])
    if actual != prelude_crc:
        raise error("AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE",
                    f"prelude CRC is 0x{prelude_crc:08x}, computed 0x{actual:08x}")
    if total > MAX_MESSAGE_LENGTH or headers_len > MAX_HEADERS_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED",
                    f"message length {total} / header block length {headers_len} exceeds the limits")
    if total < MIN_MESSAGE_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH",
                    f"message length {total} is below the minimum of {MIN_MESSAGE_LENGTH}")
    if headers_len > total - MIN_MESSAGE_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN",
                    f"header block length {headers_len} does not fit in a {total}-byte message")
    return total, headers_len


def _bad_headers(msg: str) -> BaseException:
    return error("AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN", msg)


def _utf8(view: memoryview, what: str) -> str:
    try:
        return str(view, "utf-8")
    except UnicodeDecodeError:
        raise error("AWS_ERROR_INVALID_UTF8", f"{what} is not valid UTF-8") from None


def decode_headers(view: memoryview) -> list[Header]:
    """Decode a complete header block."""
    headers: list[Header] = []
    end = len(view)
    pos = 0
    new = Header.__new__
    while pos < end:
        name_len = view[pos]
        pos += 1
        if pos + name_len + 1 > end:
            raise _bad_headers("header name runs past the end of the header block")
        name = _utf8(view[pos:pos + name_len], "header name")
        pos += name_len
        type_byte = view[pos]
        pos += 1
        if type_byte > _MAX_TYPE:
            raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_UNKNOWN_HEADER_TYPE",
                        f"header {name!r} has unknown type {type_byte}")
        value: Any
        fixed = _FIXED_BY_INT.get(type_byte)
        if fixed is not None:
            if pos + fixed.size > end:
                raise _bad_headers(f"header {name!r} value runs past the end of the header block")
            value = fixed.unpack_from(view, pos)[0]
            pos += fixed.size
        elif type_byte == _BYTE_BUF or type_byte == _STRING:
            if pos + 2 > end:
                raise _bad_headers(f"header {name!r} length runs past the end of the header block")
            size = _U16.unpack_from(view, pos)[0]
            pos += 2
            if pos + size > end:
                raise _bad_headers(f"header {name!r} value runs past the end of the header block")
            if type_byte == _STRING:
                value = _utf8(view[pos:pos + size], f"header {name!r} value")
            else:
                value = bytes(view[pos:pos + size])
            pos += size
        elif type_byte == _UUID:
            if pos + 16 > end:
                raise _bad_headers(f"header {name!r} value runs past the end of the header block")
            value = UUID(bytes=bytes(view[pos:pos + 16]))
            pos += 16
        else:
            value = type_byte == _BOOL_TRUE
        header = new(Header)
        header._name = name
        header._value = value
        header._type = _TYPES[type_byte]
        headers.append(header)
    return headers


def _decode_frame(buf: BytesLike, pos: int, total: int, headers_len: int) -> Message:
    """Decode the complete message of ``total`` bytes at ``pos`` (prelude already checked)."""
    with memoryview(buf) as whole:
        frame = whole[pos:pos + total]
        try:
            expected = _U32.unpack_from(frame, total - 4)[0]
            actual = zlib.crc32(frame[:total - 4])
            if actual != expected:
                raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE",
                            f"message CRC is 0x{expected:08x}, computed 0x{actual:08x}")
            hdr_view = frame[PRELUDE_LENGTH:PRELUDE_LENGTH + headers_len]
            try:
                headers = decode_headers(hdr_view)
            finally:
                hdr_view.release()
            payload = bytes(frame[PRELUDE_LENGTH + headers_len:total - 4])
        finally:
            frame.release()
    return Message(headers, payload)


def decode_message(data: BytesLike) -> Message:
    """Decode a buffer holding exactly one message."""
    size = memoryview(data).nbytes
    if size < PRELUDE_LENGTH:
        raise error("AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH",
                    f"{size} bytes is too short for an event-stream message")
    total, headers_len = _check_prelude(data, 0)
    if total != size:
        raise error("AWS_ERROR_EVENT_STREAM_BUFFER_LENGTH_MISMATCH",
                    f"prelude says {total} bytes, the buffer holds {size}")
    return _decode_frame(data, 0, total, headers_len)


_READ_CHUNK = 64 * 1024
_SHRINK_ABOVE = 1024 * 1024


class Decoder:
    """Incremental decoder: feed it bytes split anywhere, take out whole messages.

    Bytes arrive either through :meth:`feed` or, without a copy, straight from the
    socket: :meth:`get_buffer` hands out writable space at the end of the decoder's
    buffer (the ``asyncio.BufferedProtocol`` contract) and :meth:`buffer_updated`
    records how much was written there.

    After an error the decoder is dead: every later call raises
    ``AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE``.
    """

    __slots__ = ("_buf", "_end", "_failed", "_headers_len", "_start", "_total")

    def __init__(self) -> None:
        self._buf = bytearray(_READ_CHUNK)
        self._start = 0        # first unread byte
        self._end = 0          # end of the bytes received
        self._total = 0        # length of the message in progress, 0 = prelude not read yet
        self._headers_len = 0
        self._failed = False

    def _check_alive(self) -> None:
        if self._failed:
            raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE",
                        "the decoder already failed on earlier input")

    def _reserve(self, size: int) -> None:
        """Make room for ``size`` more bytes after ``_end``.  The bytearray is never
        resized in place (a view handed out by get_buffer may still exist): data is
        moved within it, or into a new, larger one."""
        buf = self._buf
        if len(buf) - self._end >= size:
            return
        unread = self._end - self._start
        if self._start and len(buf) - unread >= size:
            buf[0:unread] = buf[self._start:self._end]  # same-size assignment: no resize
        else:
            new = bytearray(max(len(buf) * 2, unread + size))
            new[0:unread] = buf[self._start:self._end]
            self._buf = new
        self._start, self._end = 0, unread

    def feed(self, data: BytesLike) -> None:
        """Append bytes; call :meth:`next_message` to take out what is complete."""
        self._check_alive()
        size = memoryview(data).nbytes
        self._reserve(size)
        self._buf[self._end:self._end + size] = data
        self._end += size

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Writable space for the next read (at least the rest of the message in
        progress, so a large payload lands in place in one piece)."""
        self._check_alive()
        want = max(sizehint, _READ_CHUNK)
        if self._total:
            want = max(want, self._total - (self._end - self._start))
        self._reserve(want)
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`get_buffer` view."""
        self._end += nbytes

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed."""
        self._check_alive()
        buf, start = self._buf, self._start
        available = self._end - start
        try:
            if not self._total:
                if available < PRELUDE_LENGTH:
                    return None
                self._total, self._headers_len = _check_prelude(buf, start)
            total = self._total
            if available < total:
                return None
            message = _decode_frame(buf, start, total, self._headers_len)
        except BaseException:
            self._failed = True
            raise
        self._total = 0
        self._start = start + total
        if self._start == self._end:
            self._start = self._end = 0
            if len(buf) > _SHRINK_ABOVE:  # do not keep a huge buffer after a huge message
                self._buf = bytearray(_READ_CHUNK)
        return message

    def messages(self, data: BytesLike) -> Iterator[Message]:
        """Feed ``data`` and yield each message it completes (raising at the first error)."""
        self.feed(data)
        while True:
            message = self.next_message()
            if message is None:
                return
            yield message

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole message."""
        return self._end - self._start

    def close(self) -> None:
        """Declare the end of input: raises if a message was left incomplete."""
        if self.pending and not self._failed:
            self._failed = True
            raise error("AWS_ERROR_EVENT_STREAM_MESSAGE_PARSER_ILLEGAL_STATE",
                        f"input ended inside a message ({self.pending} bytes left over)")


def decode_all(data: BytesLike) -> list[Message]:
    """Decode a buffer holding zero or more whole messages."""
    decoder = Decoder()
    out = list(decoder.messages(data))
    decoder.close()
    return out


def headers_by_name(headers: Sequence[Header]) -> dict[str, Header]:
    """Map of name to header (the last one wins for repeated names)."""
    return {h.name: h for h in headers}
