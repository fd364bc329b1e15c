"""Native back ends of :mod:`crtpy.checksums`.

Every CRC here runs in a native library; which one is picked at import time, by
measured speed on x86-64 with AVX-512 (see ``docs/dependencies.md``):

* CRC32 (gzip): ``isal.isal_zlib.crc32`` (ISA-L), else the standard ``zlib.crc32``.
* CRC32C (iSCSI): ``fastcrc.crc32.iscsi`` (VPCLMULQDQ, any buffer, no copy), else ISA-L's
  ``crc32_iscsi`` through cffi, else ``google_crc32c``.
* CRC64-NVME: ISA-L's ``crc64_rocksoft_refl`` through cffi (CRC-64/Rocksoft is the same
  CRC), else ``anycrc``'s CRC64-NVME model.  There is no pure-Python CRC64: without a
  native library the functions raise ``AWS_ERROR_PLATFORM_NOT_SUPPORTED``.
* combine: ``anycrc``'s ``combine`` (x^(8n) mod P in C), else :mod:`.combine`.

The names exported here (``crc32c_raw``, ``crc64_raw``, ...) take ``(data, previous)`` and
are bound once, so the public wrappers cost one Python call.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _errors
from . import combine as _pycombine

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

# ---------------------------------------------------------------- CRC32 (gzip)
try:
    from isal.isal_zlib import crc32 as _crc32_native  # type: ignore[import-not-found,unused-ignore]  # optional extra
    CRC32_BACKEND = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    from zlib import crc32 as _crc32_native
    CRC32_BACKEND = "zlib"

crc32_raw: Callable[[Any, int], int] = _crc32_native


# ---------------------------------------------------------------- ISA-L via cffi
def _load_isal() -> Any:
    """Return a cffi handle on ISA-L's CRC functions, or None.

    ISA-L is linked into python-isal's extension modules, which export its symbols; a
    system ``libisal`` is used when that is not the case."""
    try:
        import cffi  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover
        return None
    ffi = cffi.FFI()
    ffi.cdef(
        "uint64_t crc64_rocksoft_refl(uint64_t, const unsigned char *, uint64_t);"
        "unsigned int crc32_iscsi(const unsigned char *, int, unsigned int);"
    )
    candidates = []
    try:
        from isal import isal_zlib  # type: ignore[import-not-found,unused-ignore]  # optional extra

        candidates.append(isal_zlib.__file__)
    except ImportError:  # pragma: no cover
        pass
    import ctypes.util

    system = ctypes.util.find_library("isal")
    if system:  # pragma: no cover - not installed here
        candidates.append(system)
    for path in candidates:
        try:
            lib = ffi.dlopen(path)
            # Look both symbols up now, so a library lacking them is skipped.
            _ = (lib.crc64_rocksoft_refl, lib.crc32_iscsi)
        except (OSError, AttributeError):  # pragma: no cover
            continue
        return ffi, lib
    return None  # pragma: no cover


_ISAL = _load_isal()

# Inputs of at most this many bytes are handed to ISA-L in one call (its crc32 length is
# an ``int``); larger ones are fed in chunks.
_ISAL_CHUNK = 1 << 30


def _not_available(algorithm: str, packages: str) -> Callable[[Any, int], int]:
    def missing(data: Any, previous: int = 0) -> int:
        raise _errors.error(
            "AWS_ERROR_PLATFORM_NOT_SUPPORTED",
            f"{algorithm} needs a native CRC library; install {packages}",
        )

    return missing


# ---------------------------------------------------------------- CRC32C
def _crc32c_from_isal(ffi: Any, lib: Any) -> Callable[[Any, int], int]:
    fn: Callable[[Any, int, int], int] = lib.crc32_iscsi
    from_buffer = ffi.from_buffer

    def crc32c_isal(data: Any, previous: int = 0) -> int:
        if previous.__class__ is not int and not isinstance(previous, int):
            raise TypeError("an integer is required")
        if not 0 <= previous <= MASK32:
            raise OverflowError("previous CRC32C does not fit in 32 bits")
        buf = data if data.__class__ is bytes else from_buffer(data)
        n = len(buf)
        crc = previous ^ MASK32
        if n <= _ISAL_CHUNK:
            return fn(buf, n, crc) ^ MASK32
        off = 0  # pragma: no cover - multi-GiB inputs
        while off < n:  # pragma: no cover
            step = min(_ISAL_CHUNK, n - off)
            crc = fn(ffi.cast("const unsigned char *", from_buffer(data)) + off, step, crc)
            off += step
        return crc ^ MASK32  # pragma: no cover

    return crc32c_isal


try:
    from fastcrc.crc32 import iscsi as _fast_iscsi

    crc32c_raw: Callable[[Any, int], int] = _fast_iscsi
    CRC32C_BACKEND = "fastcrc"
except ImportError:  # pragma: no cover - depends on the environment
    if _ISAL is not None:
        crc32c_raw = _crc32c_from_isal(*_ISAL)
        CRC32C_BACKEND = "isal"
    else:
        try:
            import google_crc32c

            _extend: Callable[[int, bytes], int] = google_crc32c.extend

            def _crc32c_google(data: Any, previous: int = 0) -> int:
                # google_crc32c only reads immutable buffers.
                if data.__class__ is not bytes:
                    data = bytes(memoryview(data).cast("B"))
                return _extend(previous, data)

            crc32c_raw = _crc32c_google
            CRC32C_BACKEND = "google_crc32c"
        except ImportError:
            crc32c_raw = _not_available("CRC32C", "fastcrc, isal or google-crc32c")
            CRC32C_BACKEND = "none"


# ---------------------------------------------------------------- CRC64-NVME
def _crc64_from_isal(ffi: Any, lib: Any) -> Callable[[Any, int], int]:
    fn: Callable[[int, Any, int], int] = lib.crc64_rocksoft_refl
    from_buffer = ffi.from_buffer

    def crc64_isal(data: Any, previous: int = 0) -> int:
        buf = from_buffer(data)
        return fn(previous, buf, len(buf))

    return crc64_isal


# ``crc64_direct(previous, data, len(data))`` for ``bytes`` data: no buffer wrapper needed.
crc64_direct: Callable[[int, bytes, int], int] | None = None
if _ISAL is not None:
    crc64_raw: Callable[[Any, int], int] = _crc64_from_isal(*_ISAL)
    crc64_direct = _ISAL[1].crc64_rocksoft_refl
    CRC64_BACKEND = "isal"
else:  # pragma: no cover - depends on the environment
    try:
        import anycrc  # type: ignore[import-untyped,import-not-found,unused-ignore]

        _any64: Callable[[Any, int], int] = anycrc.Model("CRC64-NVME").calc

        def _crc64_anycrc(data: Any, previous: int = 0) -> int:
            if data.__class__ is not bytes:
                data = memoryview(data).cast("B")
            return _any64(data, previous)

        crc64_raw = _crc64_anycrc
        CRC64_BACKEND = "anycrc"
    except ImportError:
        crc64_raw = _not_available("CRC64-NVME", "isal or anycrc")
        CRC64_BACKEND = "none"


# ---------------------------------------------------------------- combine
def _combiners() -> tuple[Callable[[int, int, int], int], ...]:
    try:
        import anycrc  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return (
            anycrc.Model("CRC32").combine,
            anycrc.Model("CRC32-ISCSI").combine,
            anycrc.Model("CRC64-NVME").combine,
        )
    except (ImportError, ValueError):  # pragma: no cover - depends on the environment
        return (_pycombine.combine_crc32, _pycombine.combine_crc32c, _pycombine.combine_crc64nvme)


combine32_raw, combine32c_raw, combine64_raw = _combiners()
