"""Helpers for the CBOR tests: hypothesis strategies, value canonicalisation and a runner
that performs the same decoder operations on crtpy and on the reference awscrt and
reports comparable outcomes."""
from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable
from typing import Any

import awscrt.cbor as ref_cbor
from hypothesis import strategies as st

import crtpy.cbor as crt_cbor
from crtpy.exceptions import AwsCrtError

EDGE_INTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
             2**64 - 1, -1, -24, -25, -256, -257, -65536, -65537, -2**32, -2**32 - 1,
             -2**63, -2**64 + 1, -2**64]
EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 1.5, 0.1, 65504.0, 65505.0, 4294967295.0, 4294967296.0,
               -4294967296.0, -4294967297.0, 3.4028234663852886e38, 3.4028235677973366e38,
               1.1754943508222875e-38, 1.401298464324817e-45, 5e-324, 2.2250738585072014e-308,
               1e300, -1e300, math.inf, -math.inf, math.nan, -math.nan,
               struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0],
               struct.unpack(">d", bytes.fromhex("7ff8000000000abc"))[0],
               5.960464477539063e-08, 6.103515625e-05, 0.333333343267440796]

ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-2**64, 2**64 - 1),
                 st.integers(-30, 30))
floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(), st.floats(width=32),
                   st.floats(width=16), st.integers(-2**40, 2**40).map(float))
scalars = st.one_of(ints, floats, st.text(max_size=40), st.binary(max_size=40), st.booleans(),
                    st.none())
keys = st.one_of(st.text(max_size=12), st.integers(-2**64, 2**64 - 1), st.binary(max_size=8),
                 st.booleans(), st.none(), floats)

# JSON-like documents of the kind write_data_item accepts, with the edge numbers above.
data_items = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6),
                               st.dictionaries(keys, children, max_size=6)),
    max_leaves=25,
)


def canon(v: Any) -> Any:
    """A form of a decoded value that compares exactly: types and float bits included."""
    t = type(v)
    if t is float:
        return ("f", struct.pack(">d", v))
    if t is list:
        return ("l", [canon(x) for x in v])
    if t is dict:
        return ("d", [(canon(k), canon(x)) for k, x in v.items()])
    if t is tuple:
        return ("t", [canon(x) for x in v])
    return (t.__name__, v)


_REF_NAME = re.compile(r"\((AWS_[A-Z0-9_]+)\)")


def error_kind(exc: BaseException) -> str:
    """Comparable name of an exception from either implementation."""
    if isinstance(exc, AwsCrtError):
        return exc.name
    if type(exc) is RuntimeError:
        m = _REF_NAME.search(str(exc))
        if m:
            return m.group(1)
    if isinstance(exc, MemoryError):
        # the reference allocates a list for a huge announced array before noticing the limit
        return "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"
    return type(exc).__name__


def encode_ref(value: Any) -> bytes:
    e = ref_cbor.AwsCborEncoder()
    e.write_data_item(value)
    return e.get_encoded_data()


def encode_crt(value: Any) -> bytes:
    e = crt_cbor.AwsCborEncoder()
    e.write_data_item(value)
    return e.get_encoded_data()


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", canon(fn()))
    except Exception as exc:  # noqa: BLE001 - compared by kind
        return ("err", error_kind(exc))


_TRACE = os.environ.get("CRTPY_CBOR_TRACE")


def trace(data: bytes) -> None:
    """With CRTPY_CBOR_TRACE=path, record the input about to be given to the reference (to
    find inputs that crash it)."""
    if _TRACE:
        with open(_TRACE, "w") as f:
            f.write(data.hex())


STREAM_OPS = [
    "peek_next_type", "pop_next_data_item", "consume_next_single_element",
    "consume_next_whole_data_item", "pop_next_unsigned_int", "pop_next_negative_int",
    "pop_next_double", "pop_next_bool", "pop_next_bytes", "pop_next_text",
    "pop_next_array_start", "pop_next_map_start", "pop_next_tag_val", "pop_next_list",
    "pop_next_map",
]


def run_ops(module: Any, data: bytes, ops: list[str], on_epoch_time: Any = None) -> list[Any]:
    """Apply decoder operations in order; record each outcome and the remaining length."""
    trace(data)
    dec = module.AwsCborDecoder(data, on_epoch_time=on_epoch_time)
    out = []
    for op in ops:
        res = outcome(getattr(dec, op))
        if op == "peek_next_type" and res[0] == "ok":
            res = ("ok", int(res[1][1]))
        out.append((op, res, dec.get_remaining_bytes_len()))
    return out


def walk_stream(module: Any, data: bytes, limit: int = 10000) -> list[Any]:
    """Decode everything element by element, choosing each pop from peek_next_type."""
    trace(data)
    dec = module.AwsCborDecoder(data)
    T = module.AwsCborType
    pops = {
        T.UnsignedInt: dec.pop_next_unsigned_int, T.NegativeInt: dec.pop_next_negative_int,
        T.Float: dec.pop_next_double, T.Bytes: dec.pop_next_bytes, T.Text: dec.pop_next_text,
        T.ArrayStart: dec.pop_next_array_start, T.MapStart: dec.pop_next_map_start,
        T.Tag: dec.pop_next_tag_val, T.Bool: dec.pop_next_bool,
    }
    out: list[Any] = []
    for _ in range(limit):
        if dec.get_remaining_bytes_len() == 0:
            break
        try:
            t = dec.peek_next_type()
        except Exception as exc:  # noqa: BLE001
            out.append(("err", error_kind(exc)))
            break
        pop = pops.get(t)
        if pop is None:
            out.append((int(t), outcome(dec.consume_next_single_element)))
        else:
            out.append((int(t), outcome(pop)))
        out.append(dec.get_remaining_bytes_len())
    return out


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 replace, 1 insert, 2 delete, 3 truncate."""
    b = bytearray(data)
    for kind, pos, byte in edits:
        if not b:
            b.append(byte)
            continue
        pos %= len(b) + (1 if kind == 1 else 0)
        if kind == 0:
            b[pos % len(b)] = byte
        elif kind == 1:
            b.insert(pos, byte)
        elif kind == 2:
            del b[pos % len(b)]
        else:
            del b[pos % len(b):]
    return bytes(b)
