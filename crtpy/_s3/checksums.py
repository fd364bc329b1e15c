"""Checksums of S3 payloads: one running hasher per algorithm, header/XML names,
and CRC combination for full-object checksums of multipart transfers.

The native CRC and xxHash back ends (:mod:`crtpy.checksums`) load on first use: a
transfer without checksums never pays their import (a few MiB of resident memory)."""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

# algorithm values (same numbers as crtpy.s3.S3ChecksumAlgorithm)
CRC32C, CRC32, SHA1, SHA256, CRC64NVME, SHA512, XXHASH64, XXHASH3, XXHASH128 = range(1, 10)

NAMES: dict[int, str] = {CRC32C: "CRC32C", CRC32: "CRC32", SHA1: "SHA1", SHA256: "SHA256",
                         CRC64NVME: "CRC64NVME", SHA512: "SHA512", XXHASH64: "XXHASH64",
                         XXHASH3: "XXHASH3", XXHASH128: "XXHASH128"}
BY_HEADER: dict[str, int] = {f"x-amz-checksum-{n.lower()}": a for a, n in NAMES.items()}

_CRC_BYTES = {CRC32: 4, CRC32C: 4, CRC64NVME: 8}
# validation preference when a response carries several checksums
PREFERENCE = (CRC64NVME, CRC32C, CRC32, XXHASH3, XXHASH64, XXHASH128, SHA1, SHA256, SHA512)


@cache
def _backend() -> Any:
    from .. import checksums

    return checksums


@cache
def _crc_fns() -> dict[int, Callable[..., int]]:
    b = _backend()
    return {CRC32: b.crc32, CRC32C: b.crc32c, CRC64NVME: b.crc64nvme}


@cache
def _crc_combiners() -> dict[int, Callable[[int, int, int], int]]:
    b = _backend()
    return {CRC32: b.combine_crc32, CRC32C: b.combine_crc32c, CRC64NVME: b.combine_crc64nvme}


def header_name(algorithm: int) -> str:
    return f"x-amz-checksum-{NAMES[algorithm].lower()}"


def xml_name(algorithm: int) -> str:
    return "Checksum" + NAMES[algorithm]


def is_crc(algorithm: int) -> bool:
    return algorithm in _CRC_BYTES


class Hasher:
    """Running checksum of one algorithm; ``update`` takes any buffer."""

    __slots__ = ("_crc", "_fn", "_h", "algorithm", "length")

    def __init__(self, algorithm: int) -> None:
        self.algorithm = algorithm
        self._fn = _crc_fns().get(algorithm)
        self._crc = 0
        self.length = 0
        self._h: Any = None
        if self._fn is None:
            if algorithm in (SHA1, SHA256, SHA512):
                self._h = hashlib.new(NAMES[algorithm].lower())
            elif algorithm == XXHASH64:
                self._h = _backend().XXHash.new_xxhash64()
            elif algorithm == XXHASH3:
                self._h = _backend().XXHash.new_xxhash3_64()
            elif algorithm == XXHASH128:
                self._h = _backend().XXHash.new_xxhash3_128()
            else:
                raise ValueError(f"unknown checksum algorithm {algorithm!r}")

    def update(self, data: Any) -> None:
        self.length += len(data) if not isinstance(data, memoryview) else data.nbytes
        if self._fn is not None:
            self._crc = self._fn(data, self._crc)
        else:
            self._h.update(data)

    def update_all(self, pieces: Sequence[Any]) -> None:
        for piece in pieces:
            self.update(piece)

    @property
    def crc(self) -> int:
        return self._crc

    def digest(self) -> bytes:
        if self._fn is not None:
            return self._crc.to_bytes(_CRC_BYTES[self.algorithm], "big")
        if algorithm_is_xxhash(self.algorithm):
            return bytes(self._h.finalize())
        digest: bytes = self._h.digest()
        return digest

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def algorithm_is_xxhash(algorithm: int) -> bool:
    return algorithm in (XXHASH64, XXHASH3, XXHASH128)


def checksum_b64(algorithm: int, pieces: Sequence[Any]) -> str:
    h = Hasher(algorithm)
    h.update_all(pieces)
    return h.b64()


def crc_b64(algorithm: int, value: int) -> str:
    return base64.b64encode(value.to_bytes(_CRC_BYTES[algorithm], "big")).decode()


class CrcCombiner:
    """Full-object CRC from the CRCs of consecutive parts (fed in order)."""

    def __init__(self, algorithm: int) -> None:
        self.algorithm = algorithm
        self._combine = _crc_combiners()[algorithm]
        self.value: int | None = None

    def add(self, crc: int, length: int) -> None:
        self.value = crc if self.value is None else self._combine(self.value, crc, length)

    def b64(self) -> str:
        return crc_b64(self.algorithm, self.value or 0)
