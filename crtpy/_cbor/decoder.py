"""CBOR decoder core.

Two layers:

* An element-by-element state machine (``peek``/``pop``/``consume``) with the reference
  runtime's exact semantics: peeking decodes the next element's head and caches it (the
  remaining length then no longer counts it), a type mismatch leaves the cached element in
  place, and malformed or truncated input (and resource limits) leave the decoder in a
  sticky error state until :meth:`DecoderCore.reset_src`.
* A fast whole-item decoder (:func:`_fast`) used by ``pop_next_data_item``, ``pop_next_list``
  and ``pop_next_map``.  It only handles input that decodes successfully; on anything
  irregular it gives up and the call is replayed from the same start position by the exact
  element-by-element emulation (:meth:`DecoderCore._x_item`), so errors, their order and the
  decoder state afterwards are those of the reference.  Epoch-time callbacks already made by
  the fast pass are replayed, not made twice.

Limits (identical to the reference): a definite-length array or map announcing more than
10,000 entries raises ``AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED``; data items nested more than
128 deep raise ``RecursionError`` from the whole-item functions and
``AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED`` from ``consume_next_whole_data_item``.  No length
read from the input is used to allocate before it has been checked against the input size.
"""
from __future__ import annotations

import struct
from typing import Any, Final, Literal, overload

from . import accel as _accel
from .errors import INVALID_CBOR, RESOURCE_LIMIT, UNEXPECTED_TYPE, cbor_error

MAX_CONTAINER_SIZE = 10000
MAX_NESTING_DEPTH = 128
# below this many bytes the pure-Python decoder is as fast as setting up the native one
_ACCEL_MIN = 64
_PY_SSIZE_T_MAX = 2**63 - 1

# AwsCborType values
UINT: Final = 1
NEGINT: Final = 2
FLOAT: Final = 3
BYTES: Final = 4
TEXT: Final = 5
ARRAY: Final = 6
MAP: Final = 7
TAG: Final = 8
BOOL: Final = 9
NULL: Final = 10
UNDEF: Final = 11
BREAK: Final = 12
IBYTES: Final = 13
ITEXT: Final = 14
IARRAY: Final = 15
IMAP: Final = 16


def _kind_table() -> bytes:
    k = bytearray(256)
    for base, t in ((0x00, UINT), (0x20, NEGINT), (0x40, BYTES), (0x60, TEXT),
                    (0x80, ARRAY), (0xA0, MAP), (0xC0, TAG)):
        for ai in range(28):
            k[base + ai] = t
    k[0x5F], k[0x7F], k[0x9F], k[0xBF] = IBYTES, ITEXT, IARRAY, IMAP
    k[0xF4] = k[0xF5] = BOOL
    k[0xF6], k[0xF7] = NULL, UNDEF
    k[0xF9] = k[0xFA] = k[0xFB] = FLOAT
    k[0xFF] = BREAK
    return bytes(k)


_KIND = _kind_table()

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_f16 = struct.Struct(">e").unpack_from
_f32 = struct.Struct(">f").unpack_from
_f64 = struct.Struct(">d").unpack_from


class _Bail(Exception):
    """The fast decoder met something it does not handle; replay on the exact path."""


# Raised as the class, so that each bail-out makes a fresh instance: a shared instance
# would keep the traceback of its last use (its frames, and the decoder in them) alive.
# A bail-out is followed by a much costlier replay, so the allocation does not matter.
_BAIL = _Bail


def _parse(buf: bytes, pos: int, end: int) -> tuple[int, Any, int] | None:
    """Decode the element head at ``pos``: ``(type, value, next_pos)`` or ``None`` if the
    bytes are malformed or truncated.  For byte/text strings ``value`` is the payload start
    and ``next_pos`` its end (checked against ``end``)."""
    if pos >= end:
        return None
    ib = buf[pos]
    t = _KIND[ib]
    if not t:
        return None
    ai = ib & 31
    if ib >= 0xE0:
        if t == FLOAT:
            if ai == 25:
                if pos + 3 > end:
                    return None
                return FLOAT, _f16(buf, pos + 1)[0], pos + 3
            if ai == 26:
                if pos + 5 > end:
                    return None
                return FLOAT, _f32(buf, pos + 1)[0], pos + 5
            if pos + 9 > end:
                return None
            return FLOAT, _f64(buf, pos + 1)[0], pos + 9
        if t == BOOL:
            return BOOL, ai == 21, pos + 1
        return t, None, pos + 1
    if ai < 24:
        n = ai
        p = pos + 1
    elif ai == 24:
        if pos + 2 > end:
            return None
        n = buf[pos + 1]
        p = pos + 2
    elif ai == 25:
        if pos + 3 > end:
            return None
        n = _u16(buf, pos + 1)[0]
        p = pos + 3
    elif ai == 26:
        if pos + 5 > end:
            return None
        n = _u32(buf, pos + 1)[0]
        p = pos + 5
    elif ai == 27:
        if pos + 9 > end:
            return None
        n = _u64(buf, pos + 1)[0]
        p = pos + 9
    else:  # indefinite-length start
        return t, None, pos + 1
    if t == BYTES or t == TEXT:
        if n > end - p:
            return None
        return t, p, p + n
    return t, n, p


def _fast(buf: bytes, pos: int, end: int, depth: int, dec: DecoderCore) -> tuple[Any, int]:
    """Decode one whole data item at ``pos`` whose nesting depth is ``depth``.

    Returns ``(value, next_pos)``; raises (anything) when the input is not a regular,
    successfully decodable item, and the caller then replays on the exact path."""
    ib = buf[pos]
    if ib < 0x18:
        return ib, pos + 1
    if 0x60 <= ib < 0x78:
        p = pos + 1
        e = p + ib - 0x60
        if e > end:
            raise _BAIL
        return buf[p:e].decode(), e
    major = ib >> 5
    ai = ib & 31
    if major == 7:
        if ai == 27:
            return _f64(buf, pos + 1)[0], pos + 9
        if ai == 26:
            return _f32(buf, pos + 1)[0], pos + 5
        if ai == 25:
            return _f16(buf, pos + 1)[0], pos + 3
        if ai == 20:
            return False, pos + 1
        if ai == 21:
            return True, pos + 1
        if ai == 22 or ai == 23:
            return None, pos + 1
        raise _BAIL
    if ai < 24:
        n = ai
        p = pos + 1
    elif ai == 24:
        n = buf[pos + 1]
        p = pos + 2
    elif ai == 25:
        n = _u16(buf, pos + 1)[0]
        p = pos + 3
    elif ai == 26:
        n = _u32(buf, pos + 1)[0]
        p = pos + 5
    elif ai == 27:
        n = _u64(buf, pos + 1)[0]
        p = pos + 9
    elif ai == 31:
        n = -1
        p = pos + 1
    else:
        raise _BAIL
    if p > end:
        raise _BAIL
    if major == 5:
        if n < 0:
            return _fast_imap(buf, p, end, depth, dec)
        if n > MAX_CONTAINER_SIZE or (depth >= MAX_NESTING_DEPTH and n):
            raise _BAIL
        d: dict[Any, Any] = {}
        child = depth + 1
        for _ in range(n):
            kb = buf[p]
            if 0x60 <= kb < 0x78:
                k0 = p + 1
                p = k0 + kb - 0x60
                if p > end:
                    raise _BAIL
                k = buf[k0:p].decode()
            else:
                k, p = _fast(buf, p, end, child, dec)
            vb = buf[p]
            if vb < 0x18:
                d[k] = vb
                p += 1
            elif 0x60 <= vb < 0x78:
                v0 = p + 1
                p = v0 + vb - 0x60
                if p > end:
                    raise _BAIL
                d[k] = buf[v0:p].decode()
            else:
                d[k], p = _fast(buf, p, end, child, dec)
        return d, p
    if major == 4:
        if n < 0:
            return _fast_iarray(buf, p, end, depth, dec)
        if n > MAX_CONTAINER_SIZE or (depth >= MAX_NESTING_DEPTH and n):
            raise _BAIL
        lst: list[Any] = []
        add = lst.append
        child = depth + 1
        for _ in range(n):
            vb = buf[p]
            if vb < 0x18:
                add(vb)
                p += 1
            elif 0x60 <= vb < 0x78:
                v0 = p + 1
                p = v0 + vb - 0x60
                if p > end:
                    raise _BAIL
                add(buf[v0:p].decode())
            else:
                v, p = _fast(buf, p, end, child, dec)
                add(v)
        return lst, p
    if major == 0:
        if n < 0:
            raise _BAIL
        return n, p
    if major == 1:
        if n < 0:
            raise _BAIL
        return -1 - n, p
    if major == 3:
        if n < 0:
            return _fast_indef_string(buf, p, end, 0x60)
        e = p + n
        if e > end:
            raise _BAIL
        return buf[p:e].decode(), e
    if major == 2:
        if n < 0:
            return _fast_indef_string(buf, p, end, 0x40)
        e = p + n
        if e > end:
            raise _BAIL
        return buf[p:e], e
    # major 6: a tag; only tag 1 (epoch time) over a number decodes successfully
    if n != 1 or depth >= MAX_NESTING_DEPTH:
        raise _BAIL
    vb = buf[p]
    if not (vb <= 0x1B or 0x20 <= vb <= 0x3B or 0xF9 <= vb <= 0xFB):
        raise _BAIL
    v, p = _fast(buf, p, end, depth + 1, dec)
    return dec._epoch(v), p


def _fast_indef_string(buf: bytes, p: int, end: int, major_bits: int) -> tuple[Any, int]:
    """Chunks of an indefinite-length byte (0x40) or text (0x60) string, up to the break."""
    parts = []
    while True:
        ib = buf[p]
        if ib == 0xFF:
            p += 1
            break
        if ib & 0xE0 != major_bits:
            raise _BAIL
        ai = ib & 31
        if ai < 24:
            n = ai
            p += 1
        elif ai == 24:
            n = buf[p + 1]
            p += 2
        elif ai == 25:
            n = _u16(buf, p + 1)[0]
            p += 3
        elif ai == 26:
            n = _u32(buf, p + 1)[0]
            p += 5
        elif ai == 27:
            n = _u64(buf, p + 1)[0]
            p += 9
        else:
            raise _BAIL
        e = p + n
        if e > end:
            raise _BAIL
        parts.append(buf[p:e])
        p = e
    if major_bits == 0x40:
        return b"".join(parts), p
    return "".join([c.decode() for c in parts]), p


def _fast_iarray(buf: bytes, p: int, end: int, depth: int, dec: DecoderCore) -> tuple[Any, int]:
    lst: list[Any] = []
    if buf[p] == 0xFF:
        return lst, p + 1
    if depth >= MAX_NESTING_DEPTH:
        raise _BAIL
    child = depth + 1
    while buf[p] != 0xFF:
        v, p = _fast(buf, p, end, child, dec)
        lst.append(v)
    return lst, p + 1


def _fast_imap(buf: bytes, p: int, end: int, depth: int, dec: DecoderCore) -> tuple[Any, int]:
    d: dict[Any, Any] = {}
    if buf[p] == 0xFF:
        return d, p + 1
    if depth >= MAX_NESTING_DEPTH:
        raise _BAIL
    child = depth + 1
    while buf[p] != 0xFF:
        k, p = _fast(buf, p, end, child, dec)
        d[k], p = _fast(buf, p, end, child, dec)
    return d, p + 1


def _as_source(src: Any) -> bytes:
    if type(src) is bytes:
        return src
    if isinstance(src, str):
        return src.encode("utf-8")
    if src is None or isinstance(src, int):
        raise TypeError(f"CBOR source must be a bytes-like object, not {type(src).__name__}")
    try:
        return bytes(memoryview(src).cast("B"))
    except TypeError:
        raise TypeError(f"CBOR source must be a bytes-like object, not {type(src).__name__}") from None


class DecoderCore:
    """The decoder's state and every ``peek``/``pop``/``consume`` operation
    (see :class:`crtpy.cbor.AwsCborDecoder`)."""

    _on_epoch_time: Any = None

    def _init_src(self, src: Any) -> None:
        buf = _as_source(src)
        self._src = src
        self._buf = buf
        self._end = len(buf)
        self._pos = 0
        # cached (peeked) element: type (0 = none), value, and where it started
        self._ctype = 0
        self._cval: Any = None
        self._cstart = 0
        self._err: str | None = None
        self._cdepth = 0
        self._replay: list[tuple[bool, Any]] | None = None
        self._replay_at = 0

    # ---- element level -------------------------------------------------------------

    def _fill(self) -> int:
        """Make sure an element is cached and return its type (raising on errors)."""
        if self._err:
            raise cbor_error(self._err)
        t = self._ctype
        if t:
            return t
        pos = self._pos
        r = _parse(self._buf, pos, self._end)
        if r is None:
            self._err = INVALID_CBOR
            raise cbor_error(INVALID_CBOR)
        t, self._cval, self._pos = r
        self._cstart = pos
        self._ctype = t
        return t

    # The literals are the type codes above: what each kind of head leaves in _cval.
    @overload
    def _pop(self, expected: Literal[1, 2, 4, 5, 6, 7, 8]) -> int: ...  # argument/length/start
    @overload
    def _pop(self, expected: Literal[3]) -> float: ...  # FLOAT
    @overload
    def _pop(self, expected: Literal[9]) -> bool: ...  # BOOL
    @overload
    def _pop(self, expected: int) -> Any: ...

    def _pop(self, expected: int) -> Any:
        t = self._ctype
        if not t or self._err:
            t = self._fill()
        if t != expected:
            raise cbor_error(UNEXPECTED_TYPE)
        self._ctype = 0
        return self._cval

    def peek_next_type(self) -> Any:
        """Return the type of the next element without consuming it.

        Returns:
            AwsCborType: the next element's type.
        """
        return _TYPES[self._fill()]

    def get_remaining_bytes_len(self) -> int:
        """Return the number of source bytes not yet decoded.  An element that has been
        peeked but not popped is already excluded, as in the reference runtime."""
        return self._end - self._pos

    def get_remaining_bytes(self) -> bytes:
        """Return the source bytes not yet decoded (see :meth:`get_remaining_bytes_len`).

        Returns:
            bytes: the undecoded tail of the source (``b''`` when everything was decoded).
        """
        if self._pos >= self._end:
            return b""
        return self._buf[self._pos:]

    def reset_src(self, src: bytes) -> None:
        """Start decoding ``src`` from its beginning; the previous source, any peeked
        element and any error state are discarded.

        Args:
            src (bytes): the new CBOR data.
        """
        self._init_src(src)

    def consume_next_single_element(self) -> None:
        """Skip the next element only: for an array, map, tag or indefinite-length start,
        its content stays to be decoded next."""
        self._fill()
        self._ctype = 0

    def consume_next_whole_data_item(self) -> None:
        """Skip the next data item with all its content: the entries of arrays and maps,
        the chunks of indefinite-length items up to their break, and the item a tag
        applies to.  Nesting deeper than 128 raises
        ``AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED``."""
        if self._err:
            raise cbor_error(self._err)
        self._cdepth += 1
        try:
            if self._cdepth > MAX_NESTING_DEPTH:
                self._err = RESOURCE_LIMIT
                raise cbor_error(RESOURCE_LIMIT)
            t = self._ctype or self._fill()
            if t == TAG:
                self._ctype = 0
                self.consume_next_whole_data_item()
            elif t == MAP or t == ARRAY:
                n = self._cval * 2 if t == MAP else self._cval
                self._ctype = 0
                for _ in range(n):
                    self.consume_next_whole_data_item()
            elif t >= IBYTES:
                self._ctype = 0
                while self._fill() != BREAK:
                    self.consume_next_whole_data_item()
            self._ctype = 0
        finally:
            self._cdepth -= 1

    def pop_next_unsigned_int(self) -> int:
        """Consume the next element, which must be an unsigned integer, and return it.

        Raises ``AWS_ERROR_CBOR_UNEXPECTED_TYPE`` (element kept) for any other type."""
        return self._pop(UINT)

    def pop_next_negative_int(self) -> int:
        """Consume the next element, which must be a negative integer, and return its
        value (``-1 - argument``)."""
        return -1 - self._pop(NEGINT)

    def pop_next_double(self) -> float:
        """Consume the next element, which must be a half, single or double float, and
        return it as a Python float."""
        return self._pop(FLOAT)

    def pop_next_bool(self) -> bool:
        """Consume the next element, which must be ``true`` or ``false``, and return it."""
        return self._pop(BOOL)

    def pop_next_bytes(self) -> bytes:
        """Consume the next element, which must be a definite-length byte string, and
        return its content."""
        start = self._pop(BYTES)
        return self._buf[start:self._pos]

    def pop_next_text(self) -> str:
        """Consume the next element, which must be a definite-length text string, and
        return it decoded from UTF-8 (invalid UTF-8 raises ``UnicodeDecodeError``)."""
        start = self._pop(TEXT)
        return self._buf[start:self._pos].decode()

    def pop_next_array_start(self) -> int:
        """Consume the head of a definite-length array and return its number of entries.

        Indefinite-length arrays are ``AWS_ERROR_CBOR_UNEXPECTED_TYPE`` here: consume their
        start with :meth:`consume_next_single_element` and read entries up to the break.
        More than 10,000 entries raises ``AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED``."""
        n = self._pop(ARRAY)
        if n > MAX_CONTAINER_SIZE:
            self._err = RESOURCE_LIMIT
            raise cbor_error(RESOURCE_LIMIT)
        return n

    def pop_next_map_start(self) -> int:
        """Consume the head of a definite-length map and return its number of key/value
        pairs (limits as for :meth:`pop_next_array_start`)."""
        n = self._pop(MAP)
        if n > MAX_CONTAINER_SIZE:
            self._err = RESOURCE_LIMIT
            raise cbor_error(RESOURCE_LIMIT)
        return n

    def pop_next_tag_val(self) -> int:
        """Consume the next element, which must be a tag head, and return the tag number;
        the tagged item is decoded next by the caller."""
        return self._pop(TAG)

    # ---- whole data items ------------------------------------------------------------

    def pop_next_list(self) -> list[Any]:
        """Consume a whole array (definite or indefinite length) and return it as a list,
        each entry decoded as by :meth:`pop_next_data_item`."""
        return self._whole(ARRAY)

    def pop_next_map(self) -> dict[Any, Any]:
        """Consume a whole map (definite or indefinite length) and return it as a dict,
        keys and values decoded as by :meth:`pop_next_data_item`."""
        return self._whole(MAP)

    def pop_next_data_item(self) -> Any:
        """Consume the next whole data item and return it as a Python object.

        unsigned/negative integer -> ``int``; float -> ``float``; byte string (definite or
        chunked) -> ``bytes``; text string (definite or chunked) -> ``str``; ``true`` /
        ``false`` -> ``bool``; ``null`` and ``undefined`` -> ``None``; array -> ``list``;
        map -> ``dict``; tag 1 (epoch time) over a number -> the result of the
        ``on_epoch_time`` callback given to the constructor (the number itself without
        one).  Any other tag raises ``ValueError``, a break where a data item is expected
        ``AWS_ERROR_CBOR_UNEXPECTED_TYPE``, nesting deeper than 128 ``RecursionError``.
        """
        return self._whole(0)

    @overload
    def _whole(self, what: Literal[6]) -> list[Any]: ...  # ARRAY
    @overload
    def _whole(self, what: Literal[7]) -> dict[Any, Any]: ...  # MAP
    @overload
    def _whole(self, what: int) -> Any: ...

    def _whole(self, what: int) -> Any:
        if self._err:
            raise cbor_error(self._err)
        buf = self._buf
        start = self._cstart if self._ctype else self._pos
        end = self._end
        self._replay = []
        try:
            top = 1 if what == 0 else 0
            if what:
                ib = buf[start] if start < end else 0
                if what == ARRAY:
                    ok = 0x80 <= ib <= 0x9B or ib == 0x9F
                else:
                    ok = 0xA0 <= ib <= 0xBB or ib == 0xBF
                if not ok:
                    return self._exact(what)
            if _accel.AVAILABLE and end - start >= _ACCEL_MIN:
                self._replay_at = 0
                try:
                    obj, p = _accel.decode(buf, start, end, self._epoch, top)
                except Exception:  # noqa: BLE001, S110 - any doubt: decode again in Python
                    pass
                else:
                    self._pos = p
                    self._ctype = 0
                    return obj
            self._replay_at = 0
            try:
                obj, p = _fast(buf, start, end, top, self)
            except Exception:  # noqa: BLE001 - any doubt: replay on the exact path
                return self._exact(what)
            self._pos = p
            self._ctype = 0
            return obj
        finally:
            self._replay = None

    def _exact(self, what: int) -> Any:
        """Replay from the same start on the exact path (which reports the error the
        reference reports and leaves the decoder in the same state)."""
        self._replay_at = 0
        if self._ctype:
            self._pos = self._cstart
            self._ctype = 0
        if what == 0:
            return self._x_item(1)
        if what == ARRAY:
            return self._x_list(0)
        return self._x_map(0)

    def _on_epoch_time_callback(self, epoch_secs: Any) -> Any:
        cb = self._on_epoch_time
        if cb is not None:
            return cb(epoch_secs)
        return epoch_secs

    def _epoch(self, val: Any) -> Any:
        """Epoch-time conversion with a log, so that a replayed decode does not call the
        user's callback twice for the same item."""
        rec = self._replay
        if rec is None:
            return self._on_epoch_time_callback(val)
        i = self._replay_at
        self._replay_at = i + 1
        if i < len(rec):
            ok, r = rec[i]
            if ok:
                return r
            raise r
        try:
            r = self._on_epoch_time_callback(val)
        except BaseException as exc:
            rec.append((False, exc))
            raise
        rec.append((True, r))
        return r

    # Exact emulation of the reference's element-by-element whole-item decoding.

    def _x_item(self, depth: int) -> Any:
        if depth > MAX_NESTING_DEPTH:
            raise RecursionError(f"CBOR data items nested deeper than {MAX_NESTING_DEPTH} levels")
        t = self._fill()
        if t == UINT:
            return self._pop(UINT)
        if t == NEGINT:
            return -1 - self._pop(NEGINT)
        if t == FLOAT or t == BOOL:
            return self._pop(t)
        if t == BYTES:
            return self.pop_next_bytes()
        if t == TEXT:
            return self.pop_next_text()
        if t == NULL or t == UNDEF:
            self._ctype = 0
            return None
        if t == MAP or t == IMAP:
            return self._x_map(depth)
        if t == ARRAY or t == IARRAY:
            return self._x_list(depth)
        if t == IBYTES or t == ITEXT:
            return self._x_chunks(t)
        if t == TAG:
            return self._x_tag(depth)
        raise cbor_error(UNEXPECTED_TYPE)

    def _container_count(self, t: Literal[6, 7]) -> int:  # ARRAY or MAP
        n = self._pop(t)
        if n > MAX_CONTAINER_SIZE:
            # The reference records the limit error and still builds the container: the
            # first entry then fails on the recorded error.
            self._err = RESOURCE_LIMIT
            if n > _PY_SSIZE_T_MAX:
                raise OverflowError("CBOR container size does not fit in a Python container")
        return n

    def _x_list(self, depth: int) -> list[Any]:
        t = self._fill()
        out: list[Any] = []
        if t == ARRAY:
            n = self._container_count(ARRAY)
            for _ in range(n):
                out.append(self._x_item(depth + 1))
            return out
        if t != IARRAY:
            raise cbor_error(UNEXPECTED_TYPE)
        self._ctype = 0
        try:
            t = self._fill()
        except Exception:  # noqa: BLE001 - the reference ignores this peek's result
            t = IARRAY  # unchecked in the reference: the next entry reports the error
        while t != BREAK:
            out.append(self._x_item(depth + 1))
            t = self._fill()
        self._ctype = 0
        return out

    def _x_pair(self, depth: int) -> tuple[Any, Any]:
        # The reference decodes the value even when the key failed; the last error wins.
        try:
            k = self._x_item(depth)
        except Exception as kexc:  # re-raised below unless the value fails too
            self._x_item(depth)
            raise kexc  # noqa: TRY201
        return k, self._x_item(depth)

    def _x_map(self, depth: int) -> dict[Any, Any]:
        t = self._fill()
        out: dict[Any, Any] = {}
        if t == MAP:
            n = self._container_count(MAP)
            for _ in range(n):
                k, v = self._x_pair(depth + 1)
                out[k] = v
            return out
        if t != IMAP:
            raise cbor_error(UNEXPECTED_TYPE)
        self._ctype = 0
        try:
            t = self._fill()
        except Exception:  # noqa: BLE001 - the reference ignores this peek's result
            t = IMAP
        while t != BREAK:
            k, v = self._x_pair(depth + 1)
            out[k] = v
            t = self._fill()
        self._ctype = 0
        return out

    def _x_chunks(self, t: int) -> Any:
        self._ctype = 0
        text = t == ITEXT
        parts: list[Any] = []
        while self._fill() != BREAK:
            parts.append(self.pop_next_text() if text else self.pop_next_bytes())
        self._ctype = 0
        return "".join(parts) if text else b"".join(parts)

    def _x_tag(self, depth: int) -> Any:
        tag = self._pop(TAG)
        if tag != 1:
            raise ValueError(f"Unsupported tag value: {tag}.")
        t = self._fill()
        if t != FLOAT and t != UINT and t != NEGINT:
            raise cbor_error(UNEXPECTED_TYPE)
        return self._epoch(self._x_item(depth + 1))


_TYPES: tuple[Any, ...] = tuple(range(17))


def set_type_enum(enum_cls: Any) -> None:
    """Let :meth:`DecoderCore.peek_next_type` return members of the public enum."""
    global _TYPES
    _TYPES = tuple(enum_cls(i) for i in range(17))
