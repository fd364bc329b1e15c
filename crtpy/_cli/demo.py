"""``crtpy demo``: the self-contained TLS demo (crtpy._demo) or, with ``--s3``, the S3 demo."""
from __future__ import annotations

import argparse
import importlib.util
from typing import Any, TextIO

from .common import CliError, positive_int


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", parents=parents,
        help="run a real TLS session against a local server and report what was negotiated",
        description="Generate a throw-away CA, start a TLS echo server on 127.0.0.1, connect to it "
                    "with crtpy's verified TLS client (ALPN h2/http1.1), echo data through it and "
                    "print the TLS version, cipher, ALPN and throughput.  With --s3, run the S3 "
                    "demo instead (a local moto server, multipart upload and download, verified "
                    "checksums).  Nothing leaves the machine.")
    p.add_argument("--size-mib", type=positive_int, default=None, metavar="N",
                   help="MiB to send through the connection (default 64; 256 with --s3)")
    p.add_argument("--s3", action="store_true", help="run the S3 demo (needs moto[server])")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.s3:
        if importlib.util.find_spec("crtpy._s3.demo") is None:
            raise CliError("the S3 demo is not available in this build")
        from .._s3.demo import run_demo as s3_demo

        return int(s3_demo(args.size_mib or 256))
    from .._demo import run_demo

    return int(run_demo(args.size_mib or 64))
