"""Running the ``crtpy`` command line in-process for the CLI tests."""
from __future__ import annotations

import pytest

from crtpy._cli import main

__all__ = ["one_line_error", "run"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``crtpy ARGV...``; return (exit code, stdout, stderr)."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, prog: str, ignore: tuple[str, ...] = ()) -> str:
    """Check that stderr is exactly one ``PROG: error: ...`` line (lines starting with one
    of ``ignore``, such as verbose HTTP traces, aside) and no traceback; return it."""
    lines = [line for line in err.splitlines() if line.strip() and not (ignore and line.startswith(ignore))]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]
