"""RFC 6455 frame encoding helpers and masking.  Pure functions, no I/O."""
from __future__ import annotations

import os
from collections.abc import Callable

Buffer = bytes | bytearray | memoryview

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

KNOWN_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))
DATA_OPCODES = frozenset((CONTINUATION, TEXT, BINARY))

MAX_CONTROL_PAYLOAD = 125
MAX_PAYLOAD_LENGTH = 0x7FFFFFFFFFFFFFFF


def is_data_opcode(opcode: int) -> bool:
    return opcode in DATA_OPCODES


_CHUNK = 1 << 16  # big-integer XOR is fastest on cache-sized pieces
_ONES = int.from_bytes(b"\x01\x00\x00\x00" * (_CHUNK // 4), "little")  # 0x...0000000100000001


def apply_mask(data: Buffer, mask: bytes, offset: int = 0) -> Buffer:
    """XOR ``data`` with the 4-byte ``mask``, as if ``data`` started ``offset`` bytes into
    the masked payload.  Done with big-integer XORs over 64 KiB pieces, never a per-byte
    loop.  Returns a new bytes-like object."""
    n = len(data)
    if n == 0:
        return b""
    shift = offset & 3
    if shift:
        mask = mask[shift:] + mask[:shift]
    frombytes = int.from_bytes
    if n <= 4096:
        key = mask * ((n >> 2) + 1)
        return (frombytes(data, "little") ^ frombytes(key[:n], "little")).to_bytes(n, "little")
    key_int = frombytes(mask, "little") * _ONES  # the mask repeated over one whole piece
    src = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
    out = bytearray(n)
    full = n - n % _CHUNK
    for i in range(0, full, _CHUNK):
        out[i:i + _CHUNK] = (frombytes(src[i:i + _CHUNK], "little") ^ key_int).to_bytes(_CHUNK, "little")
    rem = n - full
    if rem:
        key_rem = key_int & ((1 << (8 * rem)) - 1)
        out[full:] = (frombytes(src[full:], "little") ^ key_rem).to_bytes(rem, "little")
    src.release()
    return out


def encode_header(opcode: int, length: int, fin: bool, mask: bytes | None) -> bytes:
    """The header of one frame (with the masking key when ``mask`` is given)."""
    if length < 0 or length > MAX_PAYLOAD_LENGTH:
        raise ValueError("frame payload length out of range")
    first = (0x80 if fin else 0) | (opcode & 0x0F)
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, mbit | length))
    elif length < 0x10000:
        head = bytes((first, mbit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, mbit | 127)) + length.to_bytes(8, "big")
    if mask is not None:
        head += mask
    return head


def encode_frame(opcode: int, payload: Buffer, fin: bool = True, *,
                 mask: bytes | None = None,
                 mask_source: Callable[[int], bytes] = os.urandom,
                 client: bool = True) -> list[Buffer]:
    """Encode one frame as a list of byte strings (header, payload) so that large payloads
    are not copied once more into a joined buffer.  Clients mask with a fresh random key."""
    if client and mask is None:
        mask = mask_source(4)
    head = encode_header(opcode, len(payload), fin, mask if client else None)
    if not payload:
        return [head]
    body = apply_mask(payload, mask) if (client and mask is not None) else bytes(payload)
    return [head, body]


def is_valid_close_code(code: int) -> bool:
    """Status codes a peer may put in a CLOSE frame (the same set the reference accepts)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
