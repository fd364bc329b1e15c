"""Logging integration: crtpy logs through Python's :mod:`logging`.

Every crtpy subsystem has its own logger under the ``crtpy`` logger (``crtpy.io``,
``crtpy.io.tls``, ``crtpy.http``, ``crtpy.mqtt5``, ``crtpy.s3``, ...), so an
application sees crtpy's records in its own handlers and can filter them by name.
:func:`init_logging` sets the level crtpy logs at; it may be called more than once.
"""
from __future__ import annotations

import enum
import logging as _py_logging

from ._runtime import logs as _logs
from .io import LogLevel

__all__ = ["CRT_LOG_FORMAT", "LogLevel", "LogSubject", "init_logging", "log", "set_log_level"]

#: A format string for handlers that show crtpy's records (thread name included, since
#: crtpy works on several threads).
CRT_LOG_FORMAT = "%(asctime)s [%(threadName)s] %(levelname)s %(name)s - %(message)s"


class LogSubject(enum.IntEnum):
    """The subsystems of the AWS Common Runtime that log messages.

    Each maps to a logger under ``crtpy`` (for example ``IO_TLS`` logs to
    ``crtpy.io.tls`` and ``S3_GENERAL`` to ``crtpy.s3``).
    """

    COMMON_GENERAL = 0
    COMMON_TASK_SCHEDULER = 1
    IO_GENERAL = 1024
    IO_EVENT_LOOP = 1025
    IO_SOCKET = 1026
    IO_SOCKET_HANDLER = 1027
    IO_TLS = 1028
    IO_ALPN = 1029
    IO_DNS = 1030
    IO_PKI = 1031
    IO_CHANNEL = 1032
    IO_CHANNEL_BOOTSTRAP = 1033
    IO_FILE_UTILS = 1034
    IO_SHARED_LIBRARY = 1035
    HTTP_GENERAL = 2048
    HTTP_CONNECTION = 2049
    HTTP_SERVER = 2050
    HTTP_STREAM = 2051
    HTTP_CONNECTION_MANAGER = 2052
    HTTP_WEBSOCKET = 2053
    HTTP_WEBSOCKET_SETUP = 2054
    EVENT_STREAM_GENERAL = 4096
    EVENT_STREAM_CHANNEL_HANDLER = 4097
    EVENT_STREAM_RPC_SERVER = 4098
    EVENT_STREAM_RPC_CLIENT = 4099
    MQTT_GENERAL = 5120
    MQTT_CLIENT = 5121
    MQTT_TOPIC_TREE = 5122
    AUTH_GENERAL = 6144
    AUTH_PROFILE = 6145
    AUTH_CREDENTIALS_PROVIDER = 6146
    AUTH_SIGNING = 6147
    CAL_GENERAL = 7168
    CAL_ECC = 7169
    CAL_HASH = 7170
    CAL_HMAC = 7171
    CAL_DER = 7172
    CAL_LIBCRYPTO_RESOLVE = 7173
    CAL_RSA = 7174
    CAL_ED25519 = 7175
    S3_GENERAL = 14336
    S3_CLIENT = 14337
    SDKUTILS_GENERAL = 15360
    SDKUTILS_PROFILE = 15361
    SDKUTILS_ENDPOINTS_PARSING = 15362
    SDKUTILS_ENDPOINTS_RESOLVE = 15363
    SDKUTILS_ENDPOINTS_GENERAL = 15364
    SDKUTILS_PARTITIONS_PARSING = 15365
    SDKUTILS_ENDPOINTS_REGEX = 15366


_AREAS = (("EVENT_STREAM_", "eventstream"), ("SDKUTILS_", "sdkutils"), ("COMMON_", "common"),
          ("IO_", "io"), ("HTTP_", "http"), ("MQTT_", "mqtt"), ("AUTH_", "auth"), ("CAL_", "cal"),
          ("S3_", "s3"))


def _logger_name(subject: LogSubject) -> str:
    for prefix, area in _AREAS:
        if subject.name.startswith(prefix):
            leaf = subject.name[len(prefix):]
            if leaf == "GENERAL":
                return f"{_logs.ROOT_NAME}.{area}"
            return f"{_logs.ROOT_NAME}.{area}.{leaf.lower().replace('_', '-')}"
    return _logs.ROOT_NAME


_LOGGERS: dict[int, _py_logging.Logger] = {int(s): _py_logging.getLogger(_logger_name(s)) for s in LogSubject}


def init_logging(level: int = _py_logging.DEBUG) -> None:
    """Have crtpy log at ``level`` (a Python logging level) and above.

    Records go to the ``crtpy`` logger hierarchy and from there to the application's
    handlers (configure them with :func:`logging.basicConfig` or your own).  Unlike the
    reference runtime, calling this again is harmless: it only changes the level.

    Args:
        level (int): Python logging level, e.g. ``logging.DEBUG``.
    """
    _check_level(level)
    _logs.set_level(level)


def set_log_level(level: int) -> None:
    """Change the level crtpy logs at.  ``logging.NOTSET`` (0) switches crtpy's logging off.

    Args:
        level (int): Python logging level.
    """
    _check_level(level)
    _logs.set_level(level)


def log(level: int, subject: LogSubject, message: str) -> None:
    """Log ``message`` at Python ``level`` on the logger of ``subject``.

    Args:
        level (int): Python logging level.
        subject (LogSubject): the subsystem the message is about.
        message (str): the text.
    """
    _check_level(level)
    logger = _LOGGERS.get(int(subject))
    if logger is None:
        raise ValueError(f"unknown log subject {subject!r}")
    logger.log(level, "%s", message)


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be an int logging level, not {type(level).__name__}")
    if level < 0:
        raise ValueError(f"invalid logging level {level}")
