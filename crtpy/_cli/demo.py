"""``crtpy demo``: the S3 demo (crtpy._s3.demo, the main job) or, with ``--tls``, the TLS demo."""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from .common import positive_int


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", parents=parents,
        help="upload and download a large object through crtpy's S3 client against a local server",
        description="Start an S3-compatible server (moto) on 127.0.0.1, create a bucket, upload a "
                    "generated file with multipart and a CRC64-NVME checksum, download it back, "
                    "verify it and print the throughput of each direction.  With --tls, run the "
                    "TLS demo instead (a throw-away CA, a TLS echo server, crtpy's verified TLS "
                    "client; prints TLS version, cipher, ALPN and throughput).  Nothing leaves the "
                    "machine and no AWS account is needed.")
    p.add_argument("--size-mib", type=positive_int, default=None, metavar="N",
                   help="MiB to move (default 256; 64 with --tls)")
    p.add_argument("--tls", action="store_true", help="run the TLS demo instead of the S3 demo")
    p.add_argument("--s3", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.tls:
        from .._demo import run_demo

        return int(run_demo(args.size_mib or 64, out=out))
    from .._s3.demo import run_demo as s3_demo

    return int(s3_demo(args.size_mib or 256, out=out))
