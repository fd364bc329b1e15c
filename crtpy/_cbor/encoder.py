"""CBOR encoder core.

Output is bit-identical to the reference runtime:

* integers use the shortest head (RFC 8949 preferred serialization); values outside
  ``[-2**64, 2**64 - 1]`` are refused (the reference has no bignum encoding);
* a float is written as an integer when it is integral and within
  ``[-2**32, 2**32 - 1]``, else as a single-precision float when that is exact, else as a
  double; never as a half float.  Infinities are single floats and every NaN is the
  canonical single-precision quiet NaN ``fa 7f c0 00 00``.

Everything is appended to one ``bytearray`` with precompiled :class:`struct.Struct`
packers; the whole-item writer is a single recursive function with the common cases
(short text, small integers) inlined.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

_U64_MAX = 0xFFFFFFFFFFFFFFFF

_pack_BB = struct.Struct(">BB").pack
_pack_BH = struct.Struct(">BH").pack
_pack_BI = struct.Struct(">BI").pack
_pack_BQ = struct.Struct(">BQ").pack
_pack_Bf = struct.Struct(">Bf").pack
_pack_Bd = struct.Struct(">Bd").pack
_pack_f = struct.Struct(">f").pack
_unpack_f = struct.Struct(">f").unpack

_NAN = b"\xfa\x7f\xc0\x00\x00"
# text heads for lengths 0..23 are single bytes 0x60..0x77


def head(major: int, n: int) -> bytes:
    """The head (initial byte and argument) of major type ``major`` (0..7, pre-shifted by
    the caller as ``major << 5``) with argument ``n`` in ``[0, 2**64 - 1]``."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return _pack_BB(major | 24, n)
    if n < 0x10000:
        return _pack_BH(major | 25, n)
    if n < 0x100000000:
        return _pack_BI(major | 26, n)
    return _pack_BQ(major | 27, n)


def float_bytes(v: float) -> bytes:
    """The reference runtime's encoding of a double."""
    if -4294967296.0 <= v <= 4294967295.0:
        i = int(v)
        if i == v:
            return head(0, i) if i >= 0 else head(0x20, -1 - i)
    elif v != v:  # noqa: PLR0124 - NaN test
        return _NAN
    try:
        p = _pack_f(v)
    except OverflowError:
        return _pack_Bd(0xFB, v)
    if _unpack_f(p)[0] == v:
        return b"\xfa" + p
    return _pack_Bd(0xFB, v)


# Encoded map keys (text strings up to _KEY_CACHE_LEN characters), shared by all encoders:
# keys repeat from one document to the next.  Bounded; cleared when full.
_key_cache: dict[str, bytes] = {}
_KEY_CACHE_MAX = 4096
_KEY_CACHE_LEN = 48


def _key_bytes(s: str) -> bytes:
    b = s.encode("utf-8")
    n = len(b)
    enc = (bytes((0x60 | n,)) if n < 24 else head(0x60, n)) + b
    if len(s) <= _KEY_CACHE_LEN:
        if len(_key_cache) >= _KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[s] = enc
    return enc


def _int_bytes(v: int) -> bytes:
    if v >= 0:
        if v <= _U64_MAX:
            return head(0, v)
    else:
        v = -1 - v
        if v <= _U64_MAX:
            return head(0x20, v)
    raise OverflowError("The integer is too large for CBOR: bignums are not supported")


def make_item_writer(buf: bytearray) -> Callable[[Any], None]:
    """Return a function that appends the encoding of a Python data item to ``buf``.

    Supported: ``None``, exactly ``int``/``float``/``bool``/``bytes``, and ``str``, ``list``,
    ``dict`` and their subclasses; anything else raises ``ValueError`` (after the items before
    it have been written, as the reference does).  Nesting is bounded by the interpreter's
    recursion limit (``RecursionError``), which also stops self-referencing containers.
    Text that cannot be UTF-8 encoded raises ``UnicodeEncodeError`` here (the caller turns
    it into ``TypeError``).
    """
    append = buf.append
    extend = buf.extend
    key_get = _key_cache.get
    key_bytes = _key_bytes
    int_bytes = _int_bytes
    fbytes = float_bytes
    pack_BB, pack_BH = _pack_BB, _pack_BH
    _int, _float, _str, _bytes, _bool, _list, _dict = int, float, str, bytes, bool, list, dict

    def item(obj: Any) -> None:
        t = type(obj)
        if t is _dict:
            n = len(obj)
            if n < 24:
                append(0xA0 | n)
            else:
                extend(head(0xA0, n))
            for k, v in obj.items():
                e = key_get(k)
                if e is not None:
                    extend(e)
                elif type(k) is _str:
                    extend(key_bytes(k))
                else:
                    item(k)
                t = type(v)
                if t is _str:
                    b = v.encode()
                    n = len(b)
                    if n < 24:
                        append(0x60 | n)
                    else:
                        extend(head(0x60, n))
                    extend(b)
                elif t is _int:
                    if 0 <= v < 24:
                        append(v)
                    elif 0 <= v < 0x10000:
                        extend(pack_BB(0x18, v) if v < 0x100 else pack_BH(0x19, v))
                    else:
                        extend(int_bytes(v))
                elif t is _float:
                    extend(fbytes(v))
                elif t is _bool:
                    append(0xF5 if v else 0xF4)
                elif v is None:
                    append(0xF6)
                else:
                    item(v)
        elif t is _list:
            n = len(obj)
            if n < 24:
                append(0x80 | n)
            else:
                extend(head(0x80, n))
            for v in obj:
                t = type(v)
                if t is _str:
                    b = v.encode()
                    n = len(b)
                    if n < 24:
                        append(0x60 | n)
                    else:
                        extend(head(0x60, n))
                    extend(b)
                elif t is _int:
                    if 0 <= v < 24:
                        append(v)
                    elif 0 <= v < 0x10000:
                        extend(pack_BB(0x18, v) if v < 0x100 else pack_BH(0x19, v))
                    else:
                        extend(int_bytes(v))
                elif t is _float:
                    extend(fbytes(v))
                else:
                    item(v)
        elif t is _str:
            b = obj.encode()
            extend(head(0x60, len(b)))
            extend(b)
        elif t is _int:
            extend(int_bytes(obj))
        elif t is _float:
            extend(fbytes(obj))
        elif t is _bool:
            append(0xF5 if obj else 0xF4)
        elif obj is None:
            append(0xF6)
        elif t is _bytes:
            extend(head(0x40, len(obj)))
            extend(obj)
        elif isinstance(obj, _str):
            b = _str.__str__(obj).encode()
            extend(head(0x60, len(b)))
            extend(b)
        elif isinstance(obj, _list):
            n = _list.__len__(obj)
            extend(head(0x80, n))
            for i in range(n):
                item(_list.__getitem__(obj, i))
        elif isinstance(obj, _dict):
            extend(head(0xA0, _dict.__len__(obj)))
            for k, v in _dict.items(obj):
                item(k)
                item(v)
        else:
            raise ValueError(f"Not supported type {t!r} for CBOR encoding")

    def write(obj: Any) -> None:
        try:
            item(obj)
        except UnicodeEncodeError:
            raise TypeError("Failed to encode a str as UTF-8 for a CBOR text string") from None

    return write


def make_list_writer(item: Callable[[Any], None], buf: bytearray) -> Callable[[Any], None]:
    """Writer for ``write_list``: a ``list`` (or subclass) as a definite-length array."""

    def write_list(val: Any) -> None:
        if not isinstance(val, list):
            raise TypeError(f"write_list() needs a list, not {type(val).__name__}")
        n = list.__len__(val)
        buf.extend(head(0x80, n))
        for i in range(n):
            item(list.__getitem__(val, i))

    return write_list


def make_dict_writer(item: Callable[[Any], None], buf: bytearray) -> Callable[[Any], None]:
    """Writer for ``write_dict``: a ``dict`` (or subclass) as a definite-length map."""

    def write_dict(val: Any) -> None:
        if not isinstance(val, dict):
            raise TypeError(f"write_dict() needs a dict, not {type(val).__name__}")
        buf.extend(head(0xA0, dict.__len__(val)))
        for k, v in dict.items(val):
            item(k)
            item(v)

    return write_dict


def _uint64(val: Any, what: str) -> int:
    """Convert like the reference's unsigned 64-bit conversion: an ``int`` in range, else
    ``TypeError``."""
    if not isinstance(val, int):
        raise TypeError(f"CBOR {what} needs an int in [0, 2**64 - 1], not {type(val).__name__}")
    if val < 0 or val > _U64_MAX:
        raise TypeError(f"CBOR {what} {val} does not fit in an unsigned 64-bit integer")
    return int(val)


def _count(val: Any, what: str) -> int:
    if val < 0 or val > 2**64:
        raise ValueError(f"{what} {val} is outside [0, 2**64]")
    return _uint64(val, what)


def _double(val: Any) -> float:
    if type(val) is float:
        return val
    if isinstance(val, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"CBOR float needs a real number, not {type(val).__name__}")
    try:
        return float(val)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"CBOR float needs a number convertible to a double: {exc}") from None


class EncoderCore:
    """The encoder's state and every ``write_*`` operation (see :class:`crtpy.cbor.AwsCborEncoder`)."""

    def __init__(self) -> None:
        buf = bytearray()
        self._buf = buf
        self._item = make_item_writer(buf)
        self._list = make_list_writer(self._item, buf)
        self._dict = make_dict_writer(self._item, buf)

    def get_encoded_data(self) -> bytes:
        """Return a copy of everything encoded so far.

        Returns:
            bytes: the CBOR encoding written since creation or the last :meth:`reset`.
        """
        return bytes(self._buf)

    def reset(self) -> None:
        """Discard everything encoded so far; the encoder starts again from empty."""
        self._buf.clear()

    def write_int(self, val: int) -> None:
        """Append an integer: major type 0 for ``val >= 0``, major type 1 for negatives,
        always with the shortest head.

        Args:
            val (int): in ``[-2**64, 2**64 - 1]``; anything else raises ``TypeError``.
        """
        if type(val) is int:
            if 0 <= val < 24:
                self._buf.append(val)
                return
            if -25 < val < 0:
                self._buf.append(0x1F - val)
                return
            if -0x10000000000000000 <= val <= _U64_MAX:
                self._buf += _int_bytes(val)
                return
        if val >= 0:
            self._buf += head(0, _uint64(val, "unsigned integer"))
        else:
            self._buf += head(0x20, _uint64(-1 - val, "negative integer"))

    def write_float(self, val: float) -> None:
        """Append a number in the reference's compact float form: an integer when the value
        is integral and fits 32 bits, else a single float when exact, else a double.

        Args:
            val (float): any real number (``int`` accepted); NaN is written as the canonical
                single-precision NaN.
        """
        self._buf += float_bytes(val if type(val) is float else _double(val))

    def write_bytes(self, val: bytes) -> None:
        """Append a definite-length byte string.

        Args:
            val (bytes): the bytes (any bytes-like object is accepted).
        """
        if type(val) is bytes:
            buf = self._buf
            n = len(val)
            if n < 24:
                buf.append(0x40 | n)
            else:
                buf += head(0x40, n)
            buf += val
            return
        if not isinstance(val, bytes):
            if isinstance(val, (str, int)) or val is None:
                raise TypeError(f"CBOR bytes needs a bytes-like object, not {type(val).__name__}")
            try:
                val = memoryview(val).cast("B")
            except TypeError:
                raise TypeError(f"CBOR bytes needs a bytes-like object, not {type(val).__name__}") from None
        self._buf += head(0x40, len(val))
        self._buf += val

    def write_text(self, val: str) -> None:
        """Append a definite-length UTF-8 text string.

        Args:
            val (str): the text; lone surrogates raise ``TypeError``.
        """
        if type(val) is str:
            try:
                b = val.encode()
            except UnicodeEncodeError:
                raise TypeError("Failed to encode the str as UTF-8 for a CBOR text string") from None
            buf = self._buf
            n = len(b)
            if n < 24:
                buf.append(0x60 | n)
            else:
                buf += head(0x60, n)
            buf += b
            return
        if not isinstance(val, str):
            raise TypeError(f"CBOR text needs a str, not {type(val).__name__}")
        try:
            b = val.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError("Failed to encode the str as UTF-8 for a CBOR text string") from None
        self._buf += head(0x60, len(b))
        self._buf += b

    def write_array_start(self, number_entries: int) -> None:
        """Append the head of a definite-length array of ``number_entries`` data items,
        which the caller writes next.

        Args:
            number_entries (int): in ``[0, 2**64 - 1]``; a negative number or one above
                ``2**64`` raises ``ValueError``, ``2**64`` itself ``TypeError``.
        """
        if type(number_entries) is int and 0 <= number_entries < 24:
            self._buf.append(0x80 | number_entries)
        else:
            self._buf += head(0x80, _count(number_entries, "array size"))

    def write_map_start(self, number_entries: int) -> None:
        """Append the head of a definite-length map of ``number_entries`` key/value pairs,
        which the caller writes next.

        Args:
            number_entries (int): in ``[0, 2**64 - 1]`` (see :meth:`write_array_start`).
        """
        if type(number_entries) is int and 0 <= number_entries < 24:
            self._buf.append(0xA0 | number_entries)
        else:
            self._buf += head(0xA0, _count(number_entries, "map size"))

    def write_tag(self, tag_number: int) -> None:
        """Append a tag head (RFC 8949 section 3.4); the tagged data item is written next by
        the caller.

        Args:
            tag_number (int): in ``[0, 2**64 - 1]``.
        """
        self._buf += head(0xC0, _count(tag_number, "tag number"))

    def write_null(self) -> None:
        """Append ``null`` (simple value 22)."""
        self._buf.append(0xF6)

    def write_undefined(self) -> None:
        """Append ``undefined`` (simple value 23)."""
        self._buf.append(0xF7)

    def write_indef_array_start(self) -> None:
        """Append the start of an indefinite-length array; close it with :meth:`write_break`."""
        self._buf.append(0x9F)

    def write_indef_map_start(self) -> None:
        """Append the start of an indefinite-length map; close it with :meth:`write_break`."""
        self._buf.append(0xBF)

    def write_indef_bytes_start(self) -> None:
        """Append the start of an indefinite-length byte string: definite byte strings
        follow, then :meth:`write_break`."""
        self._buf.append(0x5F)

    def write_indef_text_start(self) -> None:
        """Append the start of an indefinite-length text string: definite text strings
        follow, then :meth:`write_break`."""
        self._buf.append(0x7F)

    def write_break(self) -> None:
        """Append the ``break`` stop code (``0xff``) that ends an indefinite-length item."""
        self._buf.append(0xFF)

    def write_bool(self, val: bool) -> None:
        """Append ``true`` or ``false`` (simple values 21/20) according to ``bool(val)``."""
        self._buf.append(0xF5 if val else 0xF4)

    def write_epoch_time(self, val: float) -> None:
        """Append an epoch-based date/time: tag 1 followed by ``val`` written as by
        :meth:`write_float`.

        Args:
            val (float): seconds since 1970-01-01T00:00Z, fractions allowed.
        """
        self._buf.append(0xC1)
        self._buf += float_bytes(_double(val))

    def write_list(self, val: list[Any]) -> None:
        """Append a whole list as a definite-length array, each element written as by
        :meth:`write_data_item`."""
        self._list(val)

    def write_dict(self, val: dict[Any, Any]) -> None:
        """Append a whole dict as a definite-length map, keys and values written as by
        :meth:`write_data_item`."""
        self._dict(val)

    def write_data_item(self, data_item: Any) -> None:
        """Append any supported Python value, choosing the encoding from its type.

        ``None`` -> null; ``bool``; ``int`` (exactly int) -> integer (``OverflowError``
        outside ``[-2**64, 2**64 - 1]``); ``float`` (exactly float) -> as
        :meth:`write_float`; ``bytes`` (exactly bytes) -> byte string; ``str`` -> text;
        ``list`` -> array; ``dict`` -> map (in iteration order).  Any other type raises
        ``ValueError``.

        Args:
            data_item (Any): the value to encode.
        """
        self._item(data_item)
