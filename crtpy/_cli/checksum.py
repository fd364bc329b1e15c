"""``crtpy checksum FILE --algorithm ALGO``: stream a file through one of crtpy's checksums.

Prints the digest the way S3 shows it (``x-amz-checksum-*`` headers carry base64 of the
big-endian bytes) and in hex.  ``-`` reads standard input.
"""
from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

from .common import CliError

_CHUNK = 1 << 20

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256", "md5", "xxh64", "xxh3_64", "xxh3_128")


class _Crc:
    def __init__(self, fn: Callable[[Any, int], int], width: int) -> None:
        self.fn = fn
        self.width = width
        self.value = 0

    def update(self, data: memoryview) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


class _Wrapped:
    """crtpy.crypto.Hash / crtpy.checksums.XXHash behind one ``update``/``digest``."""

    def __init__(self, obj: Any, final: str) -> None:
        self.obj = obj
        self.final = final

    def update(self, data: memoryview) -> None:
        self.obj.update(data)

    def digest(self) -> bytes:
        return bytes(getattr(self.obj, self.final)())


def new_hasher(algorithm: str) -> Any:
    """An object with ``update(memoryview)`` and ``digest() -> bytes`` for ``algorithm``."""
    from .. import checksums
    from ..crypto import Hash

    if algorithm == "crc32":
        return _Crc(checksums.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(checksums.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(checksums.crc64nvme, 8)
    if algorithm == "sha1":
        return _Wrapped(Hash.sha1_new(), "digest")
    if algorithm == "sha256":
        return _Wrapped(Hash.sha256_new(), "digest")
    if algorithm == "md5":
        return _Wrapped(Hash.md5_new(), "digest")
    if algorithm == "xxh64":
        return _Wrapped(checksums.XXHash.new_xxhash64(), "finalize")
    if algorithm == "xxh3_64":
        return _Wrapped(checksums.XXHash.new_xxhash3_64(), "finalize")
    if algorithm == "xxh3_128":
        return _Wrapped(checksums.XXHash.new_xxhash3_128(), "finalize")
    raise CliError(f"unknown algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})", 2)


def digest_stream(stream: BinaryIO, algorithm: str) -> tuple[bytes, int]:
    """Digest of everything ``stream`` yields and the number of bytes read."""
    hasher = new_hasher(algorithm)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    total = 0
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            hasher.update(view[:n])
        else:
            data = stream.read(_CHUNK)
            if not data:
                break
            n = len(data)
            hasher.update(memoryview(data))
        total += n
    return hasher.digest(), total


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "checksum", parents=parents, help="checksum or hash a file (CRC32/CRC32C/CRC64NVME, SHA, MD5, xxHash)",
        description="Stream FILE through a checksum and print it in base64 (as S3's x-amz-checksum-* "
                    "headers show it) and in hex.  FILE may be '-' for standard input.",
        epilog="example: crtpy checksum big.bin --algorithm crc64nvme")
    p.add_argument("file", metavar="FILE", help="file to read ('-' for standard input)")
    p.add_argument("-a", "--algorithm", choices=ALGORITHMS, default="crc64nvme", type=str.lower,
                   metavar="ALGO", help=f"one of {', '.join(ALGORITHMS)} (default crc64nvme)")
    p.add_argument("--format", choices=("both", "base64", "hex"), default="both",
                   help="what to print (default both: 'ALGO  base64  hex  FILE')")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.file == "-":
        digest, _ = digest_stream(sys.stdin.buffer, args.algorithm)
    else:
        try:
            f = open(args.file, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
        except IsADirectoryError:
            raise CliError(f"{args.file}: is a directory") from None
        except FileNotFoundError:
            raise CliError(f"{args.file}: no such file") from None
        except OSError as e:
            raise CliError(f"{args.file}: {e.strerror or e}") from None
        with f:
            digest, _ = digest_stream(f, args.algorithm)
    b64 = base64.b64encode(digest).decode("ascii")
    if args.format == "base64":
        out.write(b64 + "\n")
    elif args.format == "hex":
        out.write(digest.hex() + "\n")
    else:
        out.write(f"{args.algorithm}  {b64}  {digest.hex()}  {args.file}\n")
    return 0
