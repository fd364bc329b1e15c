"""Optional native whole-item decoding through cbor2's compiled decoder.

cbor2 (``cbor2._cbor2``, a compiled extension) decodes far faster than Python code can,
but differs from the reference runtime in a few places.  Its result is only used when
none of them can be involved:

* every tag goes through our own ``semantic_decoders`` mapping (a mapping that claims all
  tag numbers): tag 1 over an int/float becomes the epoch callback's result, any other tag
  aborts -- so cbor2's own date, bignum, decimal, string-reference, shared-value and
  self-describe handling never applies;
* ``strict_hashable_types`` makes cbor2 refuse map keys other than text and byte strings
  (it would turn array/map keys into tuple/frozendict where the reference raises
  ``TypeError``): maps with integer, float, bool or null keys are left to the Python path;
* the result is checked for ``undefined`` and unassigned simple values (cbor2 returns
  objects, the reference calls them malformed / returns ``None``): in O(1) through the
  reference counts of cbor2's ``undefined`` singleton and simple-value type when no Python
  callback ran, else with ``marshal.dumps`` at C speed, or a Python walk when the result
  holds objects marshal cannot write or the input is large enough to hold an array or map
  of more than 10,000 entries;
* half-precision NaNs with a payload (cbor2 keeps it, the reference does not): when the
  input may hold one, every NaN in the result must be a plain quiet NaN;
* ``max_depth`` is set below the reference's limit (cbor2 counts tags and containers), so
  anything near the limit aborts.

An abort (or any cbor2 error) makes the caller decode the same bytes again with the
pure-Python decoders, which reproduce the reference exactly, errors included.
"""
from __future__ import annotations

import io
import marshal
import re
import struct
import sys
from itertools import compress
from typing import Any

try:  # cbor2 is optional: without it the pure-Python decoders do all the work
    from cbor2 import CBORDecoder as _C2Decoder
    from cbor2 import CBORSimpleValue as _SimpleValue
    from cbor2 import undefined as _undefined
    AVAILABLE = True
    _SPECIAL_TYPES = frozenset((_SimpleValue, type(_undefined)))
except ImportError:  # pragma: no cover
    AVAILABLE = False

MAX_CONTAINER_SIZE = 10000
# cbor2 counts containers and tags; the reference allows 128 levels of data items
# counting leaves, so stay well inside it and let the exact path judge the rest.
_MAX_DEPTH = 120


# Half-precision NaNs other than the plain quiet ones: cbor2 keeps their payload, the
# reference returns the plain quiet NaN.  A match may also be payload bytes of another
# item; then decoded NaNs are checked one by one.
_HALF_NAN_WITH_PAYLOAD = re.compile(rb"\xf9(?:[\x7c\x7e\xfc\xfe][\x01-\xff]|[\x7d\x7f\xfd\xff].)", re.DOTALL)
# Initial bytes of undefined and unassigned simple values: without any of them in the input
# (as items or as payload bytes), the result cannot hold one.
_MAYBE_SIMPLE = re.compile(rb"[\xe0-\xf3\xf7\xf8]")
_PLAIN_NANS = frozenset((bytes.fromhex("7ff8000000000000"), bytes.fromhex("fff8000000000000")))
_pack_d = struct.Struct(">d").pack
_refcount = sys.getrefcount
_is_container = frozenset((list, dict)).__contains__
_is_float = frozenset((float,)).__contains__


class Abort(Exception):
    """The native result cannot be trusted to equal the reference's."""


# Raised as the class, so that each abort makes a fresh instance: a shared instance would
# keep the traceback of its last use alive, and with it the caller's decoder.
_ABORT = Abort


def _reject(value: Any, immutable: bool) -> Any:
    raise _ABORT


class _Tags(dict[Any, Any]):
    """A ``semantic_decoders`` mapping that claims every tag number."""

    def __init__(self, epoch: Any) -> None:
        super().__init__()
        self._epoch = epoch

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> Any:
        return self._epoch if key == 1 else _reject

    def get(self, key: Any, default: Any = None) -> Any:
        return self._epoch if key == 1 else _reject


def _walk_ok(obj: Any, check_sizes: bool, check_nans: bool, check_special: bool) -> bool:
    """Check a decoded tree for oversized containers, NaNs other than the plain quiet ones
    and undefined/simple values (each only when asked).  Iteration over container contents
    happens in C (``map``/``compress``); Python code runs per container and per float."""
    t = type(obj)
    if t is not list and t is not dict:
        obj = [obj]
    stack = [obj]
    pop = stack.pop
    push = stack.extend
    while stack:
        x = pop()
        vals = x.values() if type(x) is dict else x
        if check_sizes and len(x) > MAX_CONTAINER_SIZE:
            return False
        if check_special and not _SPECIAL_TYPES.isdisjoint(map(type, vals)):
            return False
        if check_nans:
            for f in compress(vals, map(_is_float, map(type, vals))):
                if f != f and _pack_d(f) not in _PLAIN_NANS:  # noqa: PLR0124
                    return False
        push(compress(vals, map(_is_container, map(type, vals))))
    return True


def decode(buf: bytes, start: int, end: int, epoch: Any, top_depth: int) -> tuple[Any, int]:
    """Decode one data item of ``buf`` at ``start`` natively: ``(value, next_pos)``.

    ``epoch(number)`` is called for each tag-1 item.  Raises (anything) when the result
    could differ from the reference's."""
    called = False

    def on_epoch(value: Any, immutable: bool) -> Any:
        nonlocal called
        t = type(value)
        if t is not int and (t is not float or (value != value and _pack_d(value) not in _PLAIN_NANS)):  # noqa: PLR0124
            raise _ABORT
        called = True
        return epoch(value)

    fp = io.BytesIO(buf)
    if start:
        fp.seek(start)
    dec = _C2Decoder(
        fp,
        semantic_decoders=_Tags(on_epoch),
        strict_hashable_types=True,
        max_depth=_MAX_DEPTH - top_depth,
    )
    # Every undefined in a result is a reference to cbor2's singleton and every simple value
    # an instance of a heap type (each instance holds a reference to its type): unchanged
    # reference counts prove the result holds neither.  Only trusted when no Python code
    # (an epoch callback) ran during the decode, so no other thread can have run either.
    refs = _refcount(_undefined), _refcount(_SimpleValue)
    obj = dec.decode()
    del dec
    pos = fp.tell()
    if pos > end:
        raise _ABORT
    big = pos - start > MAX_CONTAINER_SIZE
    nans = _HALF_NAN_WITH_PAYLOAD.search(buf, start, pos) is not None
    special = called
    if not called and refs != (_refcount(_undefined), _refcount(_SimpleValue)):
        raise _ABORT
    if special and not big and not nans:
        if _MAYBE_SIMPLE.search(buf, start, pos) is None:
            return obj, pos
        try:
            marshal.dumps(obj)
            return obj, pos
        except ValueError:
            pass
    elif not big and not nans:
        return obj, pos
    if not _walk_ok(obj, big, nans, special):
        raise _ABORT
    return obj, pos
