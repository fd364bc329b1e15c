"""CBOR (RFC 8949) encoding and decoding, compatible with ``awscrt.cbor``.

:class:`AwsCborEncoder` appends data items to an internal buffer, element by element
(``write_int``, ``write_array_start``, ...) or whole Python values at once
(:meth:`~AwsCborEncoder.write_data_item`).  :class:`AwsCborDecoder` reads a byte string
element by element (:meth:`~AwsCborDecoder.peek_next_type`, ``pop_next_*``,
``consume_next_*``) or whole data items (:meth:`~AwsCborDecoder.pop_next_data_item`).

Encodings and decoded values are identical to the reference runtime's.  Errors:

* malformed or truncated input: :class:`~crtpy.exceptions.AwsCrtError` named
  ``AWS_ERROR_INVALID_CBOR`` (it is also a ``RuntimeError``); the decoder then keeps failing
  with it until :meth:`~AwsCborDecoder.reset_src`;
* an element of another type than requested: ``AWS_ERROR_CBOR_UNEXPECTED_TYPE`` (the
  element stays to be decoded);
* a definite-length array or map announcing more than 10,000 entries, or
  ``consume_next_whole_data_item`` nesting deeper than 128:
  ``AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED``;
* whole-item decoding nested deeper than 128: ``RecursionError``; a tag other than 1:
  ``ValueError``; invalid UTF-8 in text: ``UnicodeDecodeError``; an array or map used as a
  map key: ``TypeError``.

Neither class is thread-safe: use one instance per thread.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

from . import NativeResource
from ._cbor import decoder as _decoder
from ._cbor.decoder import DecoderCore as _DecoderCore
from ._cbor.encoder import EncoderCore as _EncoderCore

__all__ = ["AwsCborDecoder", "AwsCborEncoder", "AwsCborType"]


class AwsCborType(IntEnum):
    """Type of a CBOR element, as reported by :meth:`AwsCborDecoder.peek_next_type`.

    Values match ``enum aws_cbor_type`` of the AWS C runtime.

    Attributes:
        Unknown: no element / not decoded.
        UnsignedInt: unsigned integer (major type 0).
        NegativeInt: negative integer (major type 1).
        Float: half, single or double float (major type 7).
        Bytes: definite-length byte string (major type 2).
        Text: definite-length UTF-8 text string (major type 3).
        ArrayStart: head of a definite-length array (major type 4).
        MapStart: head of a definite-length map (major type 5).
        Tag: tag head (major type 6).
        Bool: ``true`` / ``false``.
        Null: ``null``.
        Undefined: ``undefined``.
        Break: the stop code ending an indefinite-length item.
        IndefBytes: start of a chunked byte string.
        IndefStr: start of a chunked text string.
        IndefArray: start of an indefinite-length array.
        IndefMap: start of an indefinite-length map.
    """

    Unknown = 0
    UnsignedInt = 1
    NegativeInt = 2
    Float = 3
    Bytes = 4
    Text = 5
    ArrayStart = 6
    MapStart = 7
    Tag = 8
    Bool = 9
    Null = 10
    Undefined = 11
    Break = 12
    IndefBytes = 13
    IndefStr = 14
    IndefArray = 15
    IndefMap = 16


_decoder.set_type_enum(AwsCborType)


class AwsCborEncoder(_EncoderCore, NativeResource):
    """Builds CBOR data in memory.

    Call ``write_*`` methods in the order the items should appear, then
    :meth:`get_encoded_data`.  Example::

        enc = AwsCborEncoder()
        enc.write_map_start(1)
        enc.write_text("n")
        enc.write_int(-5)
        enc.get_encoded_data()          # b'\\xa1an$'

    or encode a whole value: ``enc.write_data_item({"n": [1, 2.5, None]})``.
    Not thread-safe.
    """

    def __init__(self) -> None:
        NativeResource.__init__(self)
        _EncoderCore.__init__(self)


class AwsCborDecoder(_DecoderCore, NativeResource):
    """Decodes CBOR data from a byte string.

    Either element by element -- :meth:`peek_next_type` tells what comes next, a
    ``pop_next_*`` method consumes it, ``consume_next_*`` skips -- or whole data items with
    :meth:`pop_next_data_item` / :meth:`pop_next_list` / :meth:`pop_next_map`.
    :meth:`get_remaining_bytes_len` tells how much input is left.  Not thread-safe.

    Args:
        src (bytes): the CBOR data (a ``str`` is taken as its UTF-8 encoding; other
            bytes-like objects are copied).
        on_epoch_time (Callable[[int | float], Any] | None): called with the number of
            seconds of every tag-1 (epoch time) item met by the whole-item functions; its
            return value replaces the item.  Without it the number itself is returned.
        **kwargs: accepted and ignored, for forward compatibility.
    """

    def __init__(
        self,
        src: bytes,
        on_epoch_time: Callable[[int | float], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        NativeResource.__init__(self)
        self._init_src(src)
        self._on_epoch_time = on_epoch_time
