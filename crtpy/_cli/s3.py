"""``crtpy s3 cp``: handed to the S3 command in ``crtpy._s3.cli`` (it parses its own options)."""
from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from typing import Any, TextIO

from .common import CliError


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("s3", parents=parents, help="S3 transfers (crtpy s3 cp SRC DST)",
                       description="S3 commands.  'crtpy s3 cp --help' lists the copy options.")
    s3sub = p.add_subparsers(dest="s3_command", metavar="SUBCOMMAND")
    s3sub.add_parser("cp", help="copy a file to S3 or an S3 object to a file", add_help=False)
    p.set_defaults(run=run_help)


def run_help(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raise CliError("usage: crtpy s3 cp SRC DST [options] (see 'crtpy s3 cp --help')", 2)


def run_cp(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run ``crtpy s3 cp`` with the arguments after ``cp``."""
    if importlib.util.find_spec("crtpy._s3.cli") is None:
        raise CliError("'crtpy s3 cp' is not available in this build (crtpy._s3.cli is missing)")
    from .._s3 import cli

    s3_cp: Any = getattr(cli, "s3_cp", None)
    if s3_cp is None:
        raise CliError("'crtpy s3 cp' is not available in this build (crtpy._s3.cli has no s3_cp)")
    return int(s3_cp(list(argv), stderr=err, stdout=out))
