"""The ``crtpy`` command line (``python -m crtpy``).

``main(argv)`` parses the arguments, runs one subcommand and returns the exit status:
0 on success, 1 when the operation failed, 2 for bad usage, 130 on Ctrl-C.  Failures
are one line on stderr (``crtpy <command>: error: ...``); ``--debug`` adds the traceback.
Each subcommand lives in its own module with ``add_parser(subparsers, parents)``, which
sets ``run(args, stdout, stderr) -> int`` as the parser default.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from .common import CliError, describe

__all__ = ["build_parser", "main"]


def _debug_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback when something fails")
    return p


def build_parser() -> argparse.ArgumentParser:
    from .. import __awscrt_version__, __version__
    from . import checksum, demo, http, mqtt, s3

    parser = argparse.ArgumentParser(
        prog="crtpy",
        description=f"crtpy {__version__}: the AWS Common Runtime (awscrt {__awscrt_version__} API) "
                    "in Python.  Run 'crtpy COMMAND --help' for the options of one command.")
    parser.add_argument("--version", action="version", version=f"crtpy {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback when something fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [_debug_parent()]
    demo.add_parser(sub, parents)
    s3.add_parser(sub, parents)
    http.add_parser(sub, parents)
    mqtt.add_parser(sub, parents)
    checksum.add_parser(sub, parents)
    return parser


def _prog(argv: Sequence[str]) -> str:
    words = [a for a in argv if not a.startswith("-")][:2]
    if words[:1] in (["mqtt"], ["s3"]):
        return "crtpy " + " ".join(words)
    return "crtpy " + words[0] if words else "crtpy"


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point of the ``crtpy`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    debug = "--debug" in args_list[: _command_index(args_list) + 1]
    prog = _prog(args_list)
    try:
        idx = _command_index(args_list)
        if args_list[idx:idx + 2] == ["s3", "cp"]:
            from .s3 import run_cp

            rest = args_list[idx + 2:]
            if "--debug" in rest:
                debug = True
                rest = [a for a in rest if a != "--debug"]
            return run_cp(rest, out, err)
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as e:  # --help / --version (0) or a usage error (2, already printed)
            return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
        debug = bool(getattr(args, "debug", False))
        run = getattr(args, "run", None)
        if run is None:
            parser.print_help(out)
            return 2
        return int(run(args, out, err))
    except CliError as e:
        if debug:
            traceback.print_exc(file=err)
        err.write(f"{prog}: error: {e}\n")
        return e.code
    except KeyboardInterrupt:
        err.write(f"\n{prog}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI reports every failure as one line
        if debug:
            traceback.print_exc(file=err)
        err.write(f"{prog}: error: {describe(e)}\n")
        return 1


def _command_index(argv: Sequence[str]) -> int:
    """Index of the first word that is not a global option (the command), or len(argv)."""
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            return i
    return len(argv)
