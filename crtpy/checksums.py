"""CRC and xxHash checksums, bit-identical to the AWS Common Runtime's.

The CRCs accept any contiguous bytes-like object (``bytes``, ``bytearray``, ``memoryview``,
``mmap``, ``array``...) and read it in place, plus ``str`` (hashed as UTF-8).  Each takes
the result of a previous call as its second argument to continue a running checksum.
All the work is done by native libraries chosen at import time; see
``crtpy._checksums`` and ``docs/dependencies.md``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from . import NativeResource
from . import _checksums as _backend

__all__ = [
    "XXHash",
    "combine_crc32",
    "combine_crc32c",
    "combine_crc64nvme",
    "crc32",
    "crc32c",
    "crc64nvme",
]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF

_crc32 = _backend.crc32_raw
_crc32c = _backend.crc32c_raw
_crc64 = _backend.crc64_raw
_crc64_direct = _backend.crc64_direct
_combine32 = _backend.combine32_raw
_combine32c = _backend.combine32c_raw
_combine64 = _backend.combine64_raw


def _bad_previous(value: Any) -> BaseException:
    """The exception for a running CRC value that is not an unsigned 64-bit int."""
    if not isinstance(value, int):
        return TypeError(f"the previous CRC must be an int, not {type(value).__name__}")
    if value < 0:
        return OverflowError("the previous CRC can't be negative")
    return OverflowError("the previous CRC does not fit in 64 bits")


def crc32(input: bytes | bytearray | memoryview | str, previous_crc32: int = 0) -> int:
    """Compute the CRC32 (Ethernet, gzip, zlib) of ``input``.

    Pass the value returned for the preceding data as ``previous_crc32`` to continue a
    running checksum.  Returns an unsigned 32-bit int.
    """
    if 0 <= previous_crc32 <= _MASK64:
        try:
            return _crc32(input, previous_crc32)
        except TypeError:
            if isinstance(input, str):
                return _crc32(input.encode("utf-8"), previous_crc32)
            raise
    raise _bad_previous(previous_crc32)


def crc32c(input: bytes | bytearray | memoryview | str, previous_crc32c: int = 0) -> int:
    """Compute the CRC32C (Castagnoli, iSCSI) of ``input``.

    Pass the value returned for the preceding data as ``previous_crc32c`` to continue a
    running checksum.  Returns an unsigned 32-bit int.
    """
    if previous_crc32c is None:  # the native call would take None as "start afresh"
        raise _bad_previous(previous_crc32c)
    try:
        return _crc32c(input, previous_crc32c)
    except OverflowError:
        # Values above 32 bits are truncated, as the reference does; negatives are not.
        if isinstance(previous_crc32c, int) and 0 <= previous_crc32c <= _MASK64:
            return crc32c(input, previous_crc32c & _MASK32)
        raise _bad_previous(previous_crc32c) from None
    except TypeError:
        if isinstance(input, str):
            return _crc32c(input.encode("utf-8"), previous_crc32c)
        raise


if _crc64_direct is not None:
    _direct = _crc64_direct

    def crc64nvme(input: bytes | bytearray | memoryview | str, previous_crc64nvme: int = 0) -> int:
        """Compute the CRC64-NVME (CRC-64/Rocksoft) of ``input``.

        Pass the value returned for the preceding data as ``previous_crc64nvme`` to
        continue a running checksum.  Returns an unsigned 64-bit int.
        """
        if input.__class__ is bytes:
            return _direct(previous_crc64nvme, input, len(input))
        if isinstance(input, str):
            input = input.encode("utf-8")
        return _crc64(input, previous_crc64nvme)

else:  # pragma: no cover - only without ISA-L

    def crc64nvme(input: bytes | bytearray | memoryview | str, previous_crc64nvme: int = 0) -> int:
        """Compute the CRC64-NVME (CRC-64/Rocksoft) of ``input``.

        Pass the value returned for the preceding data as ``previous_crc64nvme`` to
        continue a running checksum.  Returns an unsigned 64-bit int.
        """
        if not 0 <= previous_crc64nvme <= _MASK64:
            raise _bad_previous(previous_crc64nvme)
        if isinstance(input, str):
            input = input.encode("utf-8")
        return _crc64(input, previous_crc64nvme)


def _check_u64(name: str, value: Any) -> None:
    if not (isinstance(value, int) and 0 <= value <= _MASK64):
        raise ValueError(f"{name} must be an unsigned 64-bit int, got {value!r}")


def combine_crc32(crc32_result1: int, crc32_result2: int, data_length2: int) -> int:
    """Return the CRC32 of ``A || B`` given ``crc32(A)``, ``crc32(B)`` and ``len(B)``.

    ``data_length2`` is the length in bytes of the data block B, not of its checksum.
    Runs in O(log n) without the data.
    """
    _check_u64("crc32_result1", crc32_result1)
    _check_u64("crc32_result2", crc32_result2)
    _check_u64("data_length2", data_length2)
    if not data_length2:
        return crc32_result1 & _MASK32
    return _combine32(crc32_result1 & _MASK32, crc32_result2 & _MASK32, data_length2)


def combine_crc32c(crc32c_result1: int, crc32c_result2: int, data_length2: int) -> int:
    """Return the CRC32C of ``A || B`` given ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``.

    ``data_length2`` is the length in bytes of the data block B, not of its checksum.
    Runs in O(log n) without the data.
    """
    _check_u64("crc32c_result1", crc32c_result1)
    _check_u64("crc32c_result2", crc32c_result2)
    _check_u64("data_length2", data_length2)
    if not data_length2:
        return crc32c_result1 & _MASK32
    return _combine32c(crc32c_result1 & _MASK32, crc32c_result2 & _MASK32, data_length2)


def combine_crc64nvme(crc64nvme_result1: int, crc64nvme_result2: int, data_length2: int) -> int:
    """Return the CRC64-NVME of ``A || B`` given the CRCs of A and B and ``len(B)``.

    ``data_length2`` is the length in bytes of the data block B, not of its checksum.
    Runs in O(log n) without the data.
    """
    _check_u64("crc64nvme_result1", crc64nvme_result1)
    _check_u64("crc64nvme_result2", crc64nvme_result2)
    _check_u64("data_length2", data_length2)
    if not data_length2:
        return crc64nvme_result1
    return _combine64(crc64nvme_result1, crc64nvme_result2, data_length2)


# ---------------------------------------------------------------- xxHash
class _XXHashState(Protocol):
    # The streaming state objects of the xxhash package.
    def update(self, input: Any, /) -> None: ...
    def digest(self) -> bytes: ...


try:
    import xxhash as _xxhash

    _xxh64_digest: Callable[[Any, int], bytes] = _xxhash.xxh64_digest
    _xxh3_64_digest: Callable[[Any, int], bytes] = _xxhash.xxh3_64_digest
    _xxh3_128_digest: Callable[[Any, int], bytes] = _xxhash.xxh3_128_digest
    _xxh64_new: Callable[..., _XXHashState] = _xxhash.xxh64
    _xxh3_64_new: Callable[..., _XXHashState] = _xxhash.xxh3_64
    _xxh3_128_new: Callable[..., _XXHashState] = _xxhash.xxh3_128
except ImportError:  # pragma: no cover - depends on the environment

    def _xxhash_missing(*args: Any, **kwargs: Any) -> NoReturn:
        from . import _errors

        raise _errors.error("AWS_ERROR_PLATFORM_NOT_SUPPORTED", "xxHash needs the xxhash package")

    _xxh64_digest = _xxh3_64_digest = _xxh3_128_digest = _xxhash_missing
    _xxh64_new = _xxh3_64_new = _xxh3_128_new = _xxhash_missing


def _bad_seed(seed: Any) -> BaseException:
    if not isinstance(seed, int):
        return TypeError(f"the seed must be an int, not {type(seed).__name__}")
    return OverflowError("the seed must be an unsigned 64-bit int")


class XXHash(NativeResource):
    """An xxHash computation (XXH64, XXH3-64 or XXH3-128), one-shot or streaming.

    Digests are the canonical big-endian byte strings (8 or 16 bytes).  Build instances
    with the ``new_*`` factories; ``compute_*`` hash one buffer at once.  ``finalize``
    does not end the computation: more ``update`` calls may follow it.
    """

    __slots__ = ("_binding",)

    def __init__(self, binding: _XXHashState) -> None:
        super().__init__()
        self._binding = binding

    @staticmethod
    def new_xxhash64(seed: int = 0) -> XXHash:
        """Start a streaming XXH64 computation."""
        if not (isinstance(seed, int) and 0 <= seed <= _MASK64):
            raise _bad_seed(seed)
        return XXHash(_xxh64_new(seed=seed))

    @staticmethod
    def new_xxhash3_64(seed: int = 0) -> XXHash:
        """Start a streaming XXH3 (64-bit) computation."""
        if not (isinstance(seed, int) and 0 <= seed <= _MASK64):
            raise _bad_seed(seed)
        return XXHash(_xxh3_64_new(seed=seed))

    @staticmethod
    def new_xxhash3_128(seed: int = 0) -> XXHash:
        """Start a streaming XXH3 (128-bit) computation."""
        if not (isinstance(seed, int) and 0 <= seed <= _MASK64):
            raise _bad_seed(seed)
        return XXHash(_xxh3_128_new(seed=seed))

    @staticmethod
    def compute_xxhash64(input: bytes | bytearray | memoryview, seed: int = 0) -> bytes:
        """Return the 8-byte XXH64 digest of ``input``."""
        if seed and not 0 <= seed <= _MASK64:
            raise _bad_seed(seed)
        return _xxh64_digest(input, seed)

    @staticmethod
    def compute_xxhash3_64(input: bytes | bytearray | memoryview, seed: int = 0) -> bytes:
        """Return the 8-byte XXH3 (64-bit) digest of ``input``."""
        if seed and not 0 <= seed <= _MASK64:
            raise _bad_seed(seed)
        return _xxh3_64_digest(input, seed)

    @staticmethod
    def compute_xxhash3_128(input: bytes | bytearray | memoryview, seed: int = 0) -> bytes:
        """Return the 16-byte XXH3 (128-bit) digest of ``input``."""
        if seed and not 0 <= seed <= _MASK64:
            raise _bad_seed(seed)
        return _xxh3_128_digest(input, seed)

    def update(self, input: bytes | bytearray | memoryview) -> None:
        """Feed more data to the computation."""
        self._binding.update(input)

    def finalize(self) -> bytes:
        """Return the digest of everything fed so far."""
        return self._binding.digest()
