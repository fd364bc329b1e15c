"""CRC combination in GF(2), without touching the data.

For a reflected CRC with polynomial P, ``crc(A || B)`` equals
``crc(A) * x^(8*len(B)) mod P  xor  crc(B)``: the init and final-xor terms cancel.
``x^(8n) mod P`` is built from a table of ``x^(2^k) mod P`` (one multiplication per set
bit of ``n``), and results are cached per length, since callers usually combine parts of
one fixed size.  Used when ``anycrc`` (which does the same in C) is not installed, and by
the tests as an independent implementation.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

# x^(2^k) mod P for k = 0 .. 66 covers every byte length below 2^64 (8 * n < 2^67).
_TABLE_SIZE = 67


class _Gf2Crc:
    """Arithmetic modulo a reflected CRC polynomial of ``width`` bits."""

    def __init__(self, width: int, reflected_poly: int) -> None:
        self.width = width
        self.poly = reflected_poly
        self.one = 1 << (width - 1)  # x^0 in the reflected bit order
        table = [self.one >> 1]  # x^1
        for _ in range(_TABLE_SIZE - 1):
            table.append(self.mul(table[-1], table[-1]))
        self.x2n = table
        self.power = lru_cache(maxsize=256)(self._power)

    def mul(self, a: int, b: int) -> int:
        """a * b mod P (both reflected)."""
        m = self.one
        p = 0
        poly = self.poly
        while a:
            if a & m:
                p ^= b
                a ^= m
            m >>= 1
            b = (b >> 1) ^ poly if b & 1 else b >> 1
        return p

    def _power(self, nbytes: int) -> int:
        """x^(8 * nbytes) mod P."""
        p = self.one
        if nbytes >> 64:
            raise OverflowError("length does not fit in 64 bits")
        k = 3  # 8 * nbytes: start at x^(2^3)
        table = self.x2n
        while nbytes:
            if nbytes & 1:
                p = self.mul(table[k], p)
            nbytes >>= 1
            k += 1
        return p

    def combiner(self) -> Callable[[int, int, int], int]:
        def combine(crc1: int, crc2: int, len2: int) -> int:
            return self.mul(self.power(len2), crc1) ^ crc2

        return combine


_CRC32 = _Gf2Crc(32, 0xEDB88320)
_CRC32C = _Gf2Crc(32, 0x82F63B78)
_CRC64NVME = _Gf2Crc(64, 0x9A6C9329AC4BC9B5)

combine_crc32 = _CRC32.combiner()
combine_crc32c = _CRC32C.combiner()
combine_crc64nvme = _CRC64NVME.combiner()
