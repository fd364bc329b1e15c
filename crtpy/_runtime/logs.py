"""crtpy's loggers: one Python logger per subsystem, all under the ``crtpy`` logger.

Modules get theirs with :func:`get_logger` (``get_logger("mqtt5")`` is the logger
``crtpy.mqtt5``).  ``crtpy.logging.init_logging`` and ``crtpy.io.init_logging`` only
change the level of the ``crtpy`` logger (and, for the latter, attach one output handler);
records always propagate to the application's own handlers.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

ROOT_NAME = "crtpy"

#: Level for the reference's "Trace" log level, below DEBUG.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: Python level used to switch crtpy logging off entirely.
DISABLED = logging.CRITICAL + 10

_lock = threading.Lock()
_handler: logging.Handler | None = None


def get_logger(subsystem: str) -> logging.Logger:
    """The logger of a crtpy subsystem: ``get_logger("http")`` -> ``crtpy.http``."""
    name = subsystem if subsystem == ROOT_NAME or subsystem.startswith(ROOT_NAME + ".") \
        else f"{ROOT_NAME}.{subsystem}"
    return logging.getLogger(name)


def root() -> logging.Logger:
    return logging.getLogger(ROOT_NAME)


def set_level(level: int) -> None:
    """Set the level of every crtpy logger (through the ``crtpy`` logger)."""
    root().setLevel(DISABLED if level <= 0 else level)


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


STREAM_FORMAT = "[%(levelname)s] [%(asctime)s] [%(threadName)s] [%(name)s] - %(message)s"


def attach_output(level: int, file_name: str) -> None:
    """Write crtpy's records at ``level`` and above to ``file_name`` (``"stdout"``,
    ``"stderr"`` or a path, appended to).  A second call replaces the first output."""
    global _handler
    if file_name == "stdout":
        handler: logging.Handler = _ConsoleHandler("stdout")
    elif file_name == "stderr":
        handler = _ConsoleHandler("stderr")
    else:
        handler = logging.FileHandler(file_name, mode="a", encoding="utf-8", delay=False)
    handler.setFormatter(_UtcFormatter(STREAM_FORMAT))
    with _lock:
        old, _handler = _handler, handler
        logger = root()
        if old is not None:
            logger.removeHandler(old)
        logger.addHandler(handler)
        set_level(level)
    if old is not None:
        old.close()


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is at the time of each record."""

    def __init__(self, which: str) -> None:
        super().__init__(getattr(sys, which))
        self._which = which

    @property
    def stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self._which)
        return stream

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def output_handler() -> logging.Handler | None:
    return _handler
