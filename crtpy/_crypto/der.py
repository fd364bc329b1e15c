"""A small strict DER reader/writer: just what key-format detection and ECDSA signature
encoding need.  Never recurses, never allocates more than the input."""
from __future__ import annotations

from typing import NamedTuple

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30


class DerError(ValueError):
    """Malformed DER."""


class Tlv(NamedTuple):
    tag: int
    start: int  # first content byte
    end: int  # one past the last content byte


def read_tlv(buf: bytes, pos: int, limit: int) -> Tlv:
    """Read one definite-length, minimally encoded TLV starting at ``pos``.

    Only single-byte tags are supported (all this package needs)."""
    if pos + 2 > limit:
        raise DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4:  # indefinite length, or absurdly long
            raise DerError("unsupported length encoding")
        if pos + nbytes > limit:
            raise DerError("truncated length")
        length = int.from_bytes(buf[pos:pos + nbytes], "big")
        if length < 0x80 or buf[pos] == 0:
            raise DerError("length not minimally encoded")
        pos += nbytes
    end = pos + length
    if end > limit:
        raise DerError("content runs past the end")
    return Tlv(tag, pos, end)


def children(buf: bytes, tlv: Tlv) -> list[Tlv]:
    """The TLVs directly inside a constructed TLV."""
    out = []
    pos = tlv.start
    while pos < tlv.end:
        child = read_tlv(buf, pos, tlv.end)
        out.append(child)
        pos = child.end
    return out


def read_single(buf: bytes, tag: int) -> Tlv:
    """Parse ``buf`` as exactly one TLV with the given tag."""
    tlv = read_tlv(buf, 0, len(buf))
    if tlv.tag != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{tlv.tag:02x}")
    if tlv.end != len(buf):
        raise DerError("trailing data")
    return tlv


def decode_oid(content: bytes) -> str:
    if not content:
        raise DerError("empty OID")
    arcs = []
    value = 0
    for i, byte in enumerate(content):
        if value == 0 and byte == 0x80:
            raise DerError("OID arc not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
        elif i == len(content) - 1:
            raise DerError("truncated OID")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def encode_tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(content)) + content
