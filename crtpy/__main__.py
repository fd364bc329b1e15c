"""The ``crtpy`` command (also ``python -m crtpy``); the commands live in :mod:`crtpy._cli`."""
from __future__ import annotations

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
