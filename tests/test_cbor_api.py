"""crtpy.cbor: encoder/decoder behaviour case by case, checked against the reference awscrt."""
from __future__ import annotations

import contextlib
import math
import struct

import awscrt.cbor as ref_cbor
import pytest
from helpers.cbor import STREAM_OPS, canon, encode_ref, error_kind, run_ops

import crtpy.cbor as crt_cbor
from crtpy.cbor import AwsCborDecoder, AwsCborEncoder, AwsCborType
from crtpy.exceptions import AwsCrtError


def test_type_enum_values_match_reference():
    assert {m.name: m.value for m in AwsCborType} == {m.name: m.value for m in ref_cbor.AwsCborType}


INT_CASES = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25,
             -256, -257, -65536, -65537, -2**32, -2**32 - 1, -2**63, -2**64, True, False]
FLOAT_CASES = [0.0, -0.0, 1.0, -1.0, 1.5, 0.1, 100.0, 65504.0, 4294967295.0, 4294967296.0,
               -4294967296.0, -4294967297.0, 1e300, 5e-324, 1.401298464324817e-45,
               3.4028234663852886e38, 1e39, math.inf, -math.inf, math.nan, -math.nan, 2.5e-8,
               1.0000001, 1, 2**53, 2**1000]


def _encode(module, method, *args):
    enc = module.AwsCborEncoder()
    try:
        getattr(enc, method)(*args)
        err = None
    except Exception as exc:  # noqa: BLE001
        err = type(exc)
    return err, enc.get_encoded_data()


@pytest.mark.parametrize("val", INT_CASES + [2**64, -2**64 - 1, 1.5, -1.5])
def test_write_int_matches_reference(val):
    assert _encode(crt_cbor, "write_int", val) == _encode(ref_cbor, "write_int", val)


@pytest.mark.parametrize("val", FLOAT_CASES + ["1", 2**2000])
def test_write_float_matches_reference(val):
    assert _encode(crt_cbor, "write_float", val) == _encode(ref_cbor, "write_float", val)


def test_float_encoding_widths():
    # integral values fitting 32 bits become integers; never half floats
    assert encode_ref(1.0) == b"\x01" and _encode(crt_cbor, "write_float", 1.0)[1] == b"\x01"
    assert _encode(crt_cbor, "write_float", -0.0)[1] == b"\x00"
    assert _encode(crt_cbor, "write_float", 1.5)[1] == b"\xfa\x3f\xc0\x00\x00"
    assert _encode(crt_cbor, "write_float", 0.1)[1] == b"\xfb" + struct.pack(">d", 0.1)
    assert _encode(crt_cbor, "write_float", math.nan)[1] == b"\xfa\x7f\xc0\x00\x00"
    assert _encode(crt_cbor, "write_float", -math.inf)[1] == b"\xfa\xff\x80\x00\x00"


@pytest.mark.parametrize("method,val", [
    ("write_bytes", b""), ("write_bytes", b"a" * 300), ("write_bytes", "ab"), ("write_bytes", None),
    ("write_text", ""), ("write_text", "é" * 20), ("write_text", b"ab"), ("write_text", "\ud800"),
    ("write_bool", 0), ("write_bool", "x"), ("write_bool", []),
    ("write_array_start", 0), ("write_array_start", 2**64 - 1), ("write_array_start", 2**64),
    ("write_array_start", -1), ("write_array_start", 2**64 + 1), ("write_array_start", 1.5),
    ("write_map_start", 24), ("write_map_start", 2**64), ("write_map_start", -5),
    ("write_tag", 1), ("write_tag", 55799), ("write_tag", 2**64), ("write_tag", 1.0),
    ("write_epoch_time", 1.5), ("write_epoch_time", 100), ("write_epoch_time", 1e10),
    ("write_epoch_time", "x"),
    ("write_list", [1, "a", [None]]), ("write_dict", {"a": {1: 2.5}}),
    ("write_list", [1, 2**70, 3]), ("write_list", [1, object()]),
])
def test_write_methods_match_reference(method, val):
    assert _encode(crt_cbor, method, val) == _encode(ref_cbor, method, val)


@pytest.mark.parametrize("method", [
    "write_null", "write_undefined", "write_indef_array_start", "write_indef_map_start",
    "write_indef_bytes_start", "write_indef_text_start", "write_break"])
def test_simple_writes_match_reference(method):
    assert _encode(crt_cbor, method) == _encode(ref_cbor, method)


class _Str(str):
    pass


class _List(list):
    pass


class _Dict(dict):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize("val", [
    None, True, False, b"xy", "text", _Str("sub"), _List([1]), _Dict({1: 2}), (1, 2),
    bytearray(b"a"), 1 + 2j, {1, 2}, _Int(5), 2**64, -2**64 - 1, [1, [2, [3, {"k": b""}]]],
    {"a": 1, 2: "b", None: [], 1.5: {}, b"k": True}])
def test_write_data_item_types_match_reference(val):
    assert _encode(crt_cbor, "write_data_item", val) == _encode(ref_cbor, "write_data_item", val)


def test_bignum_encoding_refused_like_reference():
    for val in (2**64, -2**64 - 1, 10**30):
        with pytest.raises(OverflowError):
            AwsCborEncoder().write_data_item(val)
        with pytest.raises(OverflowError):
            ref_cbor.AwsCborEncoder().write_data_item(val)


def test_encoder_reset_and_accumulation():
    enc = AwsCborEncoder()
    enc.write_int(1)
    enc.write_text("a")
    assert enc.get_encoded_data() == b"\x01\x61a"
    enc.reset()
    assert enc.get_encoded_data() == b""
    enc.write_data_item([1])
    assert enc.get_encoded_data() == b"\x81\x01"


def test_write_list_rejects_non_list_without_writing():
    # the reference writes a bogus head and raises SystemError; crtpy refuses cleanly
    enc = AwsCborEncoder()
    with pytest.raises(TypeError):
        enc.write_list((1, 2))
    with pytest.raises(TypeError):
        enc.write_dict([1])
    assert enc.get_encoded_data() == b""


def test_recursive_structure_raises_recursion_error():
    x: list = []
    x.append(x)
    with pytest.raises(RecursionError):
        AwsCborEncoder().write_data_item(x)


DECODE_CASES = [
    "00", "17", "1818", "1bffffffffffffffff", "3bffffffffffffffff", "20", "f90000", "f98000",
    "f93c00", "f97c00", "f9fc00", "f97e00", "f97e01", "f9fe00", "f90001", "fa7fc00001",
    "fa7f800001", "fb7ff8000000000001", "fbfff8000000000000", "f4", "f5", "f6", "f7", "f0",
    "f3", "f8ff", "f818", "f820", "fc", "fd", "fe", "ff", "1c", "1d", "1e", "1f", "3f", "5c",
    "7d", "9e", "bc", "dc", "df", "5f4161ff", "5f41614162ff", "5fff", "7f6161ff", "7fff",
    "5f6161ff", "7f4161ff", "5f5f4161ffff", "7f61c361a9ff", "9f01ff", "9fff", "bf0102ff",
    "bf01ff", "bfff", "c11a514b67b0", "c1fb41d452d9ec200000", "c1f6", "c1c11a00", "c1", "c120",
    "c1f93c00", "c2420100", "c34100", "c06161", "d82000", "d9d9f700", "1a000100", "5a00000010",
    "7a00000010", "62c3", "62ffff", "6180", "9a00010000", "bb00000000ffffffff", "99271000",
    "b92711", "818181818181818181818100", "a10102", "a1818081", "a18080", "a1a000f6", "8201",
    "", "18", "1900", "1b0000", "a2010201", "a2010101", "9f", "bf00", "5f", "5f41", "820102",
    "83010203ff", "a1616101f5", "c1c1", "8100ff",
]


@pytest.mark.parametrize("hexdata", DECODE_CASES)
@pytest.mark.parametrize("op", STREAM_OPS)
def test_single_operation_matches_reference(hexdata, op):
    data = bytes.fromhex(hexdata)
    ops = [op, "peek_next_type", "pop_next_data_item"]
    assert run_ops(crt_cbor, data, ops) == run_ops(ref_cbor, data, ops)


def test_streaming_sequence_matches_reference():
    data = bytes.fromhex("8301020304bf6346756ef563416d7421ff")
    ops = ["get_remaining_bytes_len", "peek_next_type", "pop_next_array_start", "pop_next_text",
           "pop_next_unsigned_int", "consume_next_single_element", "consume_next_whole_data_item",
           "peek_next_type", "consume_next_single_element", "pop_next_text", "pop_next_bool",
           "pop_next_data_item", "pop_next_negative_int", "peek_next_type",
           "consume_next_single_element", "peek_next_type"]
    assert run_ops(crt_cbor, data, ops) == run_ops(ref_cbor, data, ops)


def test_peek_excludes_element_from_remaining_length():
    dec = AwsCborDecoder(b"\x19\x01\x00\x01")
    assert dec.get_remaining_bytes_len() == 4
    assert dec.peek_next_type() is AwsCborType.UnsignedInt
    assert dec.get_remaining_bytes_len() == 1
    assert dec.get_remaining_bytes() == b"\x01"
    assert dec.pop_next_unsigned_int() == 256


def test_errors_are_awscrterror_and_runtimeerror_and_sticky():
    dec = AwsCborDecoder(b"\x18")
    with pytest.raises(AwsCrtError) as info:
        dec.peek_next_type()
    assert info.value.name == "AWS_ERROR_INVALID_CBOR"
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(RuntimeError):
        dec.pop_next_data_item()
    dec.reset_src(b"\x01")
    assert dec.pop_next_data_item() == 1


def test_unexpected_type_keeps_element():
    dec = AwsCborDecoder(b"\x61a")
    with pytest.raises(AwsCrtError) as info:
        dec.pop_next_bytes()
    assert info.value.name == "AWS_ERROR_CBOR_UNEXPECTED_TYPE"
    assert dec.pop_next_text() == "a"


def test_reset_src_and_get_remaining_bytes():
    dec = AwsCborDecoder(b"\x01\x02\x03")
    assert dec.pop_next_data_item() == 1
    rest = dec.get_remaining_bytes()
    assert rest == b"\x02\x03"
    dec.reset_src(rest[1:])
    assert dec.pop_next_data_item() == 3
    assert dec.get_remaining_bytes() == b""


def test_source_types():
    assert AwsCborDecoder("\x01").pop_next_data_item() == 1  # str taken as UTF-8, like the reference
    assert AwsCborDecoder(bytearray(b"\x82\x01\x02")).pop_next_data_item() == [1, 2]
    assert AwsCborDecoder(memoryview(b"\x61a")).pop_next_data_item() == "a"
    with pytest.raises(TypeError):
        AwsCborDecoder(None)  # type: ignore[arg-type]


def _nested(depth: int, leaf: bytes = b"\x00", head: bytes = b"\x81") -> bytes:
    return head * depth + leaf


@pytest.mark.parametrize("data,ops", [
    (_nested(127), ["pop_next_data_item"]),
    (_nested(128) + b"\x01", ["pop_next_data_item", "peek_next_type", "pop_next_data_item"]),
    (_nested(128), ["pop_next_list"]),
    (_nested(129), ["pop_next_list"]),
    (_nested(127, b"\xa1\x00\x00"), ["pop_next_data_item"]),
    (_nested(126, b"\xa1\x00\x00"), ["pop_next_data_item"]),
    (_nested(127, b"\x9f\x00\xff"), ["pop_next_data_item"]),
    (_nested(127, b"\x9f\xff"), ["pop_next_data_item"]),
    (_nested(128, b"\x00\xff" + b"\xff" * 127, b"\x9f"), ["pop_next_data_item", "peek_next_type"]),
    (_nested(128, b"\x00\xff" + b"\xff" * 127, b"\xbf"), ["pop_next_data_item", "peek_next_type"]),
    (_nested(126, b"\xc1\x00"), ["pop_next_data_item"]),
    (_nested(127, b"\xc2\x00"), ["pop_next_data_item"]),
    (_nested(128, b"\xc2\x00"), ["pop_next_data_item"]),
    (_nested(127, b"\x18"), ["pop_next_data_item"]),
    (_nested(127), ["consume_next_whole_data_item"]),
    (_nested(128) + b"\x00", ["consume_next_whole_data_item", "peek_next_type"]),
    (_nested(128, b"\x00" + b"\xff" * 128, b"\x9f"), ["consume_next_whole_data_item"]),
    (_nested(300, b"\x00", b"\xc1"), ["consume_next_whole_data_item", "pop_next_data_item"]),
    (_nested(1000), ["pop_next_data_item", "consume_next_whole_data_item"]),
])
def test_nesting_limits_match_reference(data, ops):
    assert run_ops(crt_cbor, data, ops) == run_ops(ref_cbor, data, ops)


def test_nesting_limit_errors_are_documented():
    with pytest.raises(RecursionError):
        AwsCborDecoder(_nested(200)).pop_next_data_item()
    with pytest.raises(AwsCrtError) as info:
        AwsCborDecoder(_nested(200)).consume_next_whole_data_item()
    assert info.value.name == "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"
    # tag 1 directly at the limit: the reference crashes here, crtpy raises
    with pytest.raises(RecursionError):
        AwsCborDecoder(_nested(127, b"\xc1\x00")).pop_next_data_item()


def test_huge_announced_lengths_fail_fast():
    for hexdata in ("5bffffffffffffffff", "7b7fffffffffffffff00", "9bffffffffffffffff",
                    "bbffffffffffffffff", "9b00000000ffffffff"):
        dec = AwsCborDecoder(bytes.fromhex(hexdata))
        with pytest.raises((AwsCrtError, OverflowError)):
            dec.pop_next_data_item()


def test_container_limit_for_definite_but_not_indefinite_arrays():
    big = crt_cbor.AwsCborEncoder()
    big.write_list(list(range(10001)))
    with pytest.raises(AwsCrtError) as info:
        AwsCborDecoder(big.get_encoded_data()).pop_next_data_item()
    assert info.value.name == "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"
    indef = b"\x9f" + b"\x01" * 20000 + b"\xff"
    assert AwsCborDecoder(indef).pop_next_data_item() == [1] * 20000
    assert canon(AwsCborDecoder(indef).pop_next_data_item()) == canon(
        ref_cbor.AwsCborDecoder(indef).pop_next_data_item())


def test_epoch_time_callback():
    data = bytes.fromhex("82c11a514b67b0c1fb41d452d9ec200000")
    seen = []

    def conv(x):
        seen.append(x)
        return ("t", x)

    assert AwsCborDecoder(data, on_epoch_time=conv).pop_next_data_item() == [
        ("t", 1363896240), ("t", 1363896240.5)]
    assert seen == [1363896240, 1363896240.5]
    assert AwsCborDecoder(data).pop_next_data_item() == [1363896240, 1363896240.5]


def test_epoch_callback_not_repeated_when_decode_fails_later():
    # A later error makes crtpy re-decode on its exact path: the callback must not run twice.
    data = bytes.fromhex("83c101c102c2") + b"\x00" * 100
    calls = []
    dec = AwsCborDecoder(data, on_epoch_time=lambda x: calls.append(x) or x)
    ref_calls = []
    ref = ref_cbor.AwsCborDecoder(data, on_epoch_time=lambda x: ref_calls.append(x) or x)
    with pytest.raises(ValueError):
        dec.pop_next_data_item()
    with pytest.raises(ValueError):
        ref.pop_next_data_item()
    assert calls == ref_calls == [1, 2]
    assert dec.get_remaining_bytes_len() == ref.get_remaining_bytes_len()


def test_epoch_callback_exception_propagates_once():
    calls = []

    def boom(x):
        calls.append(x)
        raise ZeroDivisionError

    data = b"\x82\xc1\x01" + b"\x00" * 80
    with pytest.raises(ZeroDivisionError):
        AwsCborDecoder(data, on_epoch_time=boom).pop_next_data_item()
    assert calls == [1]


def test_map_key_failure_still_decodes_value_like_reference():
    # the reference decodes the value after a failed key; the last error wins
    data = bytes.fromhex("bf" * 128 + "00ff" + "ff" * 127)
    ops = ["pop_next_data_item", "peek_next_type"]
    assert run_ops(crt_cbor, data, ops) == run_ops(ref_cbor, data, ops)


def test_error_kind_of_reference_runtime_error():
    with pytest.raises(RuntimeError) as info:
        ref_cbor.AwsCborDecoder(b"").peek_next_type()
    assert error_kind(info.value) == "AWS_ERROR_INVALID_CBOR"


NATIVE_PATH_ITEMS = [
    "f97e00", "f9fe01", "f97c01", "f90001", "f98000", "fa7f800001", "faffc00001",
    "fb7ff0000000000001", "f7", "f0", "f8ff", "a1010102", "a1f602", "a18001", "a1a00102",
    "a1626b3101", "a1426b3101", "c11a514b67b0", "c1fb41d452d9ec200000", "c1f6", "c2420100",
    "d9d9f700", "d81900", "d81c00", "d9010000", "7f61c361a9ff", "5f41004100ff", "9f9f00ffff",
    "62c3a9", "bf6161f7ff", "a26161016161f6", "a2616101616102", "1805", "190005", "3800",
    "5a0000000141", "c1f5", "c1c24101", "a1c10100", "bf6161ff", "f818", "fb8000000000000000",
    "c1f97e01", "c1f9fc01", "c1fa7f800001",
]


@pytest.mark.parametrize("hexitem", NATIVE_PATH_ITEMS)
@pytest.mark.parametrize("callback", [None, lambda x: ("epoch", x)])
def test_long_inputs_with_edge_items_match_reference(hexitem, callback):
    # inputs of 64+ bytes may be decoded natively (cbor2); these items are where cbor2
    # differs from the reference, so crtpy must notice and produce the reference's result
    item = bytes.fromhex(hexitem)
    for data in (b"\x98\x20" + item * 32, b"\x82" + b"\x61a" * 40 + item,
                 b"\xa2\x61a" + b"\x98\x20" + b"\x00" * 32 + b"\x61b" + item,
                 b"\x83\x59\x27\x10" + bytes(10000) + b"\x81" + item + b"\x9f" + item + b"\xff"):
        ops = ["pop_next_data_item", "peek_next_type"]
        assert run_ops(crt_cbor, data, ops, callback) == run_ops(ref_cbor, data, ops, callback)


def test_decoder_is_released_after_a_decoding_error():
    """A failed whole-item decode must not leave the decoder reachable (e.g. through a
    cached exception's traceback)."""
    import gc
    import weakref

    from crtpy.cbor import AwsCborDecoder

    # b"\xff": the pure-Python fast path bails out; a long array holding `undefined`: the
    # accelerated decoder's result is refused and decoding is replayed.
    for data in (b"\xff", b"\x99\x10\x00" + b"\x01" * 4000 + b"\xf7" + b"\x01" * 95):
        dec = AwsCborDecoder(data)
        with contextlib.suppress(Exception):  # only the decoder's lifetime matters here
            dec.pop_next_data_item()
        ref = weakref.ref(dec)
        del dec
        gc.collect()
        assert ref() is None, data[:4]
