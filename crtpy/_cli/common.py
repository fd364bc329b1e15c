"""Shared pieces of the ``crtpy`` command line: errors, TLS options, progress display."""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any, TextIO


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def describe(exc: BaseException) -> str:
    """One readable line for an exception (AwsCrtError keeps its error name)."""
    name = getattr(exc, "name", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())
    if name and isinstance(name, str) and name.startswith("AWS_"):
        return f"{message} [{name}]"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, (TimeoutError,)) and not str(exc):
        return "timed out"
    return message


def env_region(explicit: str | None) -> str:
    return explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def read_file_arg(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read {what} {path}: {e.strerror or e}") from None


def check_readable(path: str | None, what: str) -> None:
    if path is not None and not os.path.isfile(path):
        raise CliError(f"{what} {path}: no such file")


def human(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class ProgressBar:
    """A one-line progress bar (bytes done, total if known, rate) redrawn on a terminal.

    ``add`` may be called from any thread; drawing is throttled to 10 per second.
    """

    def __init__(self, stream: TextIO, total: int | None = None, label: str = "") -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last >= 0.1:
                self._last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * 30)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"[{bar}] {frac * 100:5.1f}% {human(self.done)}/{human(self.total)}"
        else:
            text = human(self.done)
        self.stream.write(f"\r{self.label}{text} {human(rate)}/s   ")
        self.stream.flush()

    def finish(self) -> None:
        with self._lock:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def binary_stdout(out: Any) -> Any:
    """The byte stream behind ``out`` (``sys.stdout.buffer``), or ``out`` itself."""
    return getattr(out, "buffer", None) or out


def write_bytes(out: Any, data: bytes) -> None:
    target = binary_stdout(out)
    try:
        target.write(data)
    except TypeError:  # a text-only stream (e.g. io.StringIO under a test)
        target.write(data.decode("utf-8", "replace"))


def default_streams(stdout: TextIO | None, stderr: TextIO | None) -> tuple[TextIO, TextIO]:
    return (stdout if stdout is not None else sys.stdout, stderr if stderr is not None else sys.stderr)
