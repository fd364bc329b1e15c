"""crtpy.checksums: known answers, differential tests against the reference awscrt,
bytes-like inputs, running CRCs, combination and argument errors."""
from __future__ import annotations

import array
import mmap
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crtpy.checksums as ours
from crtpy import _checksums
from crtpy._checksums import combine as pycombine

ref = pytest.importorskip("awscrt.checksums")

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"
EXAMPLES = 1000 if LONG else 100
MAX_LEN = 1 << 20

CRCS = {
    "crc32": (ours.crc32, ref.crc32, 0xFFFFFFFF),
    "crc32c": (ours.crc32c, ref.crc32c, 0xFFFFFFFF),
    "crc64nvme": (ours.crc64nvme, ref.crc64nvme, 0xFFFFFFFFFFFFFFFF),
}
COMBINES = {
    "crc32": (ours.crc32, ours.combine_crc32, ref.combine_crc32, pycombine.combine_crc32),
    "crc32c": (ours.crc32c, ours.combine_crc32c, ref.combine_crc32c, pycombine.combine_crc32c),
    "crc64nvme": (ours.crc64nvme, ours.combine_crc64nvme, ref.combine_crc64nvme, pycombine.combine_crc64nvme),
}
XXH = ("xxhash64", "xxhash3_64", "xxhash3_128")


def _data(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


# Random inputs: length is skewed towards small sizes but reaches 1 MiB.
lengths = st.one_of(st.integers(0, 300), st.integers(0, 70_000), st.integers(0, MAX_LEN))
seeds = st.integers(0, 2**32)
common = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- known answers
@pytest.mark.parametrize("name, check", [
    ("crc32", 0xCBF43926),  # CRC-32/ISO-HDLC
    ("crc32c", 0xE3069283),  # CRC-32/ISCSI
    ("crc64nvme", 0xAE8B14860A799888),  # CRC-64/NVME
])
def test_check_values(name: str, check: int) -> None:
    fn = CRCS[name][0]
    assert fn(b"123456789") == check
    assert fn("123456789") == check
    assert fn(b"") == 0
    # Running CRC over a split of the check string.
    assert fn(b"6789", fn(b"12345")) == check


def test_xxhash_known_answers() -> None:
    X = ours.XXHash
    # Digests of the empty input from the xxHash reference implementation.
    assert X.compute_xxhash64(b"") == bytes.fromhex("ef46db3751d8e999")
    assert X.compute_xxhash3_64(b"") == bytes.fromhex("2d06800538d394c2")
    assert X.compute_xxhash3_128(b"") == bytes.fromhex("99aa06d3014798d86001c324468d497f")


def test_backends_are_native() -> None:
    assert _checksums.CRC32C_BACKEND != "none"
    assert _checksums.CRC64_BACKEND in ("isal", "anycrc")


# ---------------------------------------------------------------- differential
@common
@given(seed=seeds, length=lengths, data=st.data())
def test_crcs_match_reference(seed: int, length: int, data: st.DataObject) -> None:
    buf = _data(seed, length)
    prev = data.draw(st.one_of(st.just(0), st.integers(0, 2**64 - 1)), label="previous")
    for name, (mine, theirs, _) in CRCS.items():
        assert mine(buf) == theirs(buf), name
        assert mine(buf, prev) == theirs(buf, prev), name


@common
@given(seed=seeds, length=lengths, data=st.data())
def test_running_crc_random_splits(seed: int, length: int, data: st.DataObject) -> None:
    buf = _data(seed, length)
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=6), label="cuts"))
    view = memoryview(buf)
    for name, (mine, theirs, _) in CRCS.items():
        crc = 0
        last = 0
        for cut in cuts + [length]:
            crc = mine(view[last:cut], crc)
            last = cut
        assert crc == theirs(buf), name


@common
@given(seed=seeds, length=lengths, data=st.data())
def test_combine_matches_reference(seed: int, length: int, data: st.DataObject) -> None:
    buf = _data(seed, length)
    cut = data.draw(st.integers(0, length), label="cut")
    a, b = buf[:cut], buf[cut:]
    for name, (crc, mine, theirs, python) in COMBINES.items():
        c1, c2 = crc(a), crc(b)
        whole = crc(buf)
        assert mine(c1, c2, len(b)) == whole, name
        assert theirs(c1, c2, len(b)) == whole, name
        if b:
            assert python(c1, c2, len(b)) == whole, name


@common
@given(c1=st.integers(0, 2**64 - 1), c2=st.integers(0, 2**64 - 1), n=st.integers(0, 2**64 - 1))
def test_combine_arbitrary_values_match_reference(c1: int, c2: int, n: int) -> None:
    for name, (_, mine, theirs, _) in COMBINES.items():
        assert mine(c1, c2, n) == theirs(c1, c2, n), name


@common
@given(seed=seeds, length=lengths, xseed=st.one_of(st.just(0), st.integers(0, 2**64 - 1)), data=st.data())
def test_xxhash_matches_reference(seed: int, length: int, xseed: int, data: st.DataObject) -> None:
    buf = _data(seed, length)
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=5), label="cuts"))
    for name in XXH:
        expected = getattr(ref.XXHash, f"compute_{name}")(buf, xseed)
        assert getattr(ours.XXHash, f"compute_{name}")(buf, xseed) == expected, name
        h = getattr(ours.XXHash, f"new_{name}")(xseed)
        last = 0
        for cut in cuts + [length]:
            h.update(memoryview(buf)[last:cut])
            last = cut
        assert h.finalize() == expected, name


def test_xxhash_finalize_then_continue_like_reference() -> None:
    for name in XXH:
        mine = getattr(ours.XXHash, f"new_{name}")(7)
        theirs = getattr(ref.XXHash, f"new_{name}")(7)
        for h in (mine, theirs):
            h.update(b"abc")
        assert mine.finalize() == theirs.finalize()
        assert mine.finalize() == theirs.finalize()
        mine.update(b"def")
        theirs.update(b"def")
        assert mine.finalize() == theirs.finalize()


# ---------------------------------------------------------------- input types
def _buffers(payload: bytes) -> dict[str, object]:
    m = mmap.mmap(-1, len(payload))
    m.write(payload)
    return {
        "bytes": payload,
        "bytearray": bytearray(payload),
        "memoryview": memoryview(payload),
        "memoryview-slice": memoryview(b"xx" + payload + b"yy")[2:-2],
        "memoryview-2d": memoryview(payload).cast("B", (2, len(payload) // 2)),
        "array-B": array.array("B", payload),
        "array-I": array.array("I", payload),
        "mmap": m,
    }


@pytest.mark.parametrize("kind", list(_buffers(bytes(16))))
def test_every_bytes_like_object(kind: str) -> None:
    payload = _data(1, 4096)
    buf = _buffers(payload)[kind]
    for name, (mine, theirs, _) in CRCS.items():
        assert mine(buf) == theirs(payload), (name, kind)
        assert mine(buf, 12345) == theirs(payload, 12345), (name, kind)
    for name in XXH:
        expected = getattr(ref.XXHash, f"compute_{name}")(payload)
        assert getattr(ours.XXHash, f"compute_{name}")(buf) == expected, (name, kind)
        h = getattr(ours.XXHash, f"new_{name}")()
        h.update(buf)
        assert h.finalize() == expected


def test_str_input_is_utf8() -> None:
    for name, (mine, theirs, _) in CRCS.items():
        assert mine("h\u00e9llo \u2603") == theirs("h\u00e9llo \u2603") == mine("h\u00e9llo \u2603".encode()), name


def test_previous_crc_above_32_bits_is_truncated_like_reference() -> None:
    for name in ("crc32", "crc32c"):
        mine, theirs, _ = CRCS[name]
        for prev in (2**32, 2**32 + 5, 2**64 - 1):
            assert mine(b"data", prev) == theirs(b"data", prev) == mine(b"data", prev & 0xFFFFFFFF)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(CRCS))
def test_crc_argument_errors(name: str) -> None:
    mine = CRCS[name][0]
    for bad in (None, 5, 1.5, object()):
        with pytest.raises(TypeError):
            mine(bad)
    with pytest.raises(BufferError):
        mine(memoryview(b"123456789")[::2])
    for bad_prev, exc in ((-1, OverflowError), (2**64, OverflowError), (1.0, TypeError), (None, TypeError)):
        with pytest.raises(exc):
            mine(b"abc", bad_prev)


@pytest.mark.parametrize("name", list(COMBINES))
def test_combine_argument_errors(name: str) -> None:
    combine = COMBINES[name][1]
    for args in ((-1, 0, 1), (0, -1, 1), (0, 0, -1), (2**64, 0, 1), (0, 0, 2**64), (1.0, 0, 1), (None, 0, 1)):
        with pytest.raises(ValueError):
            combine(*args)
    # A zero-length second block leaves the first CRC unchanged.
    assert combine(5, 7, 0) == 5


def test_xxhash_seed_errors() -> None:
    X = ours.XXHash
    for bad, exc in ((-1, OverflowError), (2**64, OverflowError), ("1", TypeError)):
        for factory in (X.new_xxhash64, X.new_xxhash3_64, X.new_xxhash3_128):
            with pytest.raises(exc):
                factory(bad)
        for compute in (X.compute_xxhash64, X.compute_xxhash3_64, X.compute_xxhash3_128):
            with pytest.raises(exc):
                compute(b"abc", bad)
    with pytest.raises(TypeError):
        X.compute_xxhash64("text")
    with pytest.raises(TypeError):
        X.new_xxhash64().update(None)


def test_missing_native_library_raises_instead_of_slow_fallback() -> None:
    from crtpy.exceptions import AwsCrtError

    missing = _checksums._not_available("CRC64-NVME", "isal or anycrc")
    with pytest.raises(AwsCrtError) as info:
        missing(b"abc", 0)
    assert info.value.name == "AWS_ERROR_PLATFORM_NOT_SUPPORTED"
    assert "anycrc" in info.value.message


def test_isal_crc32c_fallback_matches_reference() -> None:
    """The ISA-L CRC32C path (used when fastcrc is missing) gives the same results."""
    if _checksums._ISAL is None:
        pytest.skip("ISA-L not loadable")
    fn = _checksums._crc32c_from_isal(*_checksums._ISAL)
    for n in (0, 1, 7, 100, 4096, 100_003):
        buf = _data(n, n)
        assert fn(buf) == ref.crc32c(buf)
        assert fn(bytearray(buf), 99) == ref.crc32c(buf, 99)


FALLBACK_SCRIPT = r"""
import sys, array
for name in {blocked!r}:
    sys.modules[name] = None  # make "import name" fail
import crtpy.checksums as c
from crtpy import _checksums as b
import awscrt.checksums as r
print(b.CRC32_BACKEND, b.CRC32C_BACKEND, b.CRC64_BACKEND)
data = bytes(range(256)) * 40
for buf in (data, bytearray(data), memoryview(data)[3:], array.array("I", data[:4000]), "text \u00e9"):
    for fn in ("crc32", "crc32c", "crc64nvme"):
        ref_buf = buf.encode() if isinstance(buf, str) else bytes(memoryview(buf).cast("B"))
        assert getattr(c, fn)(buf) == getattr(r, fn)(ref_buf), (fn, type(buf))
        assert getattr(c, fn)(buf, 77) == getattr(r, fn)(ref_buf, 77), (fn, type(buf))
for fn in ("combine_crc32", "combine_crc32c", "combine_crc64nvme"):
    assert getattr(c, fn)(123, 456, 789) == getattr(r, fn)(123, 456, 789), fn
print("ok")
"""


@pytest.mark.parametrize("blocked, backends", [
    (("fastcrc",), "isal isal isal"),
    (("fastcrc", "isal", "isal.isal_zlib"), "zlib google_crc32c anycrc"),
    (("fastcrc", "isal", "isal.isal_zlib", "anycrc"), "zlib google_crc32c none"),
])
def test_fallback_backends_match_reference(blocked: tuple[str, ...], backends: str) -> None:
    """Each back-end chain gives the reference's results (the last one also exercises the
    pure-Python combine); without any CRC64 library crc64nvme raises instead of running
    slow Python."""
    import importlib.util
    import subprocess
    import sys

    needed = {"isal": ("isal",), "google_crc32c": ("google_crc32c",), "anycrc": ("anycrc",)}
    for word, modules in needed.items():
        if word in backends.split() and not all(importlib.util.find_spec(m) for m in modules):
            pytest.skip(f"{word} is not installed")
    script = FALLBACK_SCRIPT.format(blocked=blocked)
    if backends.endswith("none"):
        script = script.replace('("crc32", "crc32c", "crc64nvme")', '("crc32", "crc32c")')
        script += (
            "\nfrom crtpy.exceptions import AwsCrtError\n"
            "try:\n    c.crc64nvme(b'x')\nexcept AwsCrtError as e:\n    print(e.name)\n"
        )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert " ".join(lines[:3]) == backends
    assert "ok" in lines
    if backends.endswith("none"):
        assert lines[-1] == "AWS_ERROR_PLATFORM_NOT_SUPPORTED"
