"""The ``crtpy`` command (also ``python -m crtpy``)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _build_parser() -> argparse.ArgumentParser:
    from . import __awscrt_version__, __version__

    parser = argparse.ArgumentParser(
        prog="crtpy",
        description=f"crtpy {__version__}: the AWS Common Runtime (awscrt {__awscrt_version__} API) in Python.")
    parser.add_argument("--version", action="version", version=f"crtpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run a real TLS session against a local server and report what was negotiated",
        description="Generate a throw-away CA, start a TLS echo server on 127.0.0.1, connect to it "
                    "with crtpy's verified TLS client (ALPN h2/http1.1), echo data through it and "
                    "print the TLS version, cipher, ALPN and throughput.  Nothing leaves the machine.")
    demo.add_argument("--size-mib", type=int, default=64, metavar="N",
                      help="MiB to send through the connection (echoed back; default 64)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crtpy`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.size_mib < 1:
            parser.error("--size-mib must be at least 1")
        from ._demo import run_demo

        return run_demo(args.size_mib)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
