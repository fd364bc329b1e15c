"""Fuzzing the CBOR decoder: random and mutated inputs, random operation sequences.

Only documented exceptions may come out of crtpy, and the outcome of every operation (value
or error name, and the remaining length) must equal the reference's.  A few thousand
examples by default; CRTPY_LONG_TESTS=1 runs 25,000.
"""
from __future__ import annotations

import os
import re
import tracemalloc

import awscrt.cbor as ref_cbor
import pytest
from helpers.cbor import STREAM_OPS, data_items, encode_ref, error_kind, mutate, run_ops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crtpy.cbor as crt_cbor
from crtpy.exceptions import AwsCrtError

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"
FUZZ = settings(max_examples=25000 if LONG else 2500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DOCUMENTED_NAMES = {"AWS_ERROR_INVALID_CBOR", "AWS_ERROR_CBOR_UNEXPECTED_TYPE",
                    "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"}
# RecursionError: nesting limit; ValueError: unsupported tag (UnicodeDecodeError is one too);
# TypeError: an array or map as a map key; OverflowError: container size beyond Py_ssize_t.
DOCUMENTED_BUILTINS = (RecursionError, ValueError, TypeError, OverflowError)

WHOLE_ITEM_OPS = {"pop_next_data_item", "pop_next_list", "pop_next_map"}
# The reference's whole-item decoder can corrupt the process's memory on two kinds of
# malformed input, so those inputs are only given to crtpy:
# * a tag 1 (any head size) whose item fails: it calls back into Python with an error pending;
# * an indefinite-length map whose next element fails to decode after a complete pair: it
#   releases the previous key and value a second time.
_MAY_CRASH = re.compile(rb"\xbf|\xc1|\xd8\x01|\xd9\x00\x01|\xda\x00\x00\x00\x01|\xdb\x00{7}\x01")


def _may_crash_reference(data: bytes, ops: list[str]) -> bool:
    return _MAY_CRASH.search(data) is not None and bool(WHOLE_ITEM_OPS.intersection(ops))

ops_lists = st.lists(st.sampled_from(STREAM_OPS), min_size=1, max_size=6)
interesting = st.sampled_from([0x00, 0x17, 0x18, 0x1B, 0x1F, 0x20, 0x40, 0x5F, 0x60, 0x7F,
                               0x80, 0x9B, 0x9F, 0xA0, 0xBF, 0xC1, 0xC2, 0xD8, 0xF4, 0xF7,
                               0xF8, 0xF9, 0xFA, 0xFB, 0xFF])
edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6),
                           st.integers(0, 255) | interesting), min_size=1, max_size=4)
mutated = st.builds(lambda v, e: mutate(encode_ref(v), e), data_items, edits)
inputs = st.one_of(st.binary(max_size=64),
                   st.lists(interesting | st.integers(0, 255), max_size=40).map(bytes),
                   mutated)


def _check_documented(data: bytes, ops: list[str]) -> None:
    dec = crt_cbor.AwsCborDecoder(data)
    for op in ops:
        try:
            getattr(dec, op)()
        except AwsCrtError as exc:
            assert exc.name in DOCUMENTED_NAMES, exc
            assert isinstance(exc, RuntimeError)
        except DOCUMENTED_BUILTINS:
            pass
        assert 0 <= dec.get_remaining_bytes_len() <= len(data)


def _same(ours: list, ref: list) -> None:
    assert len(ours) == len(ref)
    for (op, o_res, o_rem), (_, r_res, r_rem) in zip(ours, ref):
        if r_res == ("err", "SystemError"):
            # the reference can end up calling back into Python with an error pending
            assert o_res[0] == "err"
            return
        assert (op, o_res, o_rem) == (op, r_res, r_rem)


@pytest.mark.timeout(3600 if LONG else 300)
@FUZZ
@given(inputs, ops_lists)
def test_fuzz_decoder_matches_reference(data, ops):
    _check_documented(data, ops)
    if _may_crash_reference(data, ops):
        return  # crtpy alone is checked for these
    _same(run_ops(crt_cbor, data, ops), run_ops(ref_cbor, data, ops))


@pytest.mark.timeout(3600 if LONG else 300)
@settings(max_examples=2500 if LONG else 300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.binary(min_size=1, max_size=4096))
def test_fuzz_large_random_inputs(data):
    # long inputs exercise the native path's validation and the pure-Python fallbacks
    _check_documented(data, ["pop_next_data_item", "consume_next_whole_data_item",
                             "pop_next_list", "pop_next_map"])
    ops = ["pop_next_data_item", "pop_next_data_item", "consume_next_whole_data_item"]
    if not _may_crash_reference(data, ops):
        _same(run_ops(crt_cbor, data, ops), run_ops(ref_cbor, data, ops))


@pytest.mark.parametrize("hexdata", [
    "5bffffffffffffffff", "5b7fffffffffffffff00", "7bffffffffffffffff", "9bffffffffffffffff",
    "bbffffffffffffffff", "9b00000000ffffffff", "9a7fffffff", "ba7fffffff", "5a7fffffff",
    "7a7fffffff41", "9f" * 5000, "5f" + "5a7fffffff" * 100,
])
def test_announced_lengths_never_allocate(hexdata):
    data = bytes.fromhex(hexdata)
    data = data + bytes(20000) if len(data) < 100 else data  # also take the native path
    for op in ("pop_next_data_item", "consume_next_whole_data_item", "peek_next_type",
               "pop_next_bytes", "pop_next_list"):
        tracemalloc.start()
        try:
            dec = crt_cbor.AwsCborDecoder(data)
            try:
                getattr(dec, op)()
            except (AwsCrtError, *DOCUMENTED_BUILTINS):
                pass
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(data) + (1 << 20), (op, peak)


def test_error_name_helper_sees_reference_memory_error_as_limit():
    assert error_kind(MemoryError()) == "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"


def test_reference_module_is_the_real_one():
    # guard: the differential tests are meaningless if awscrt were aliased to crtpy
    assert ref_cbor.AwsCborDecoder is not crt_cbor.AwsCborDecoder
