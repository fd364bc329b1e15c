"""The single error table of crtpy.

Every module raises through :func:`error` (or builds codes with :func:`code_of`), so an
error name always carries the same numeric code as in the reference runtime.  Messages
are crtpy's own: a few are written out, the rest are derived from the name.
"""
from __future__ import annotations

from ._error_codes import CODES

NAME_BY_CODE: dict[int, str] = dict(CODES)
CODE_BY_NAME: dict[str, int] = {name: code for code, name in CODES}

# Codes that surface as a built-in Python exception instead of AwsCrtError,
# as the reference does.
BUILTIN_BY_NAME: dict[str, type[Exception]] = {
    "AWS_ERROR_OOM": MemoryError,
    "AWS_ERROR_OVERFLOW_DETECTED": OverflowError,
    "AWS_ERROR_INVALID_INDEX": IndexError,
    "AWS_ERROR_INVALID_ARGUMENT": ValueError,
    "AWS_ERROR_UNIMPLEMENTED": NotImplementedError,
    "AWS_ERROR_FILE_INVALID_PATH": FileNotFoundError,
    "AWS_IO_READ_WOULD_BLOCK": BlockingIOError,
    "AWS_IO_BROKEN_PIPE": BrokenPipeError,
}

_MESSAGES: dict[str, str] = {
    "AWS_ERROR_SUCCESS": "Success.",
    "AWS_ERROR_UNKNOWN": "An unknown error occurred.",
    "AWS_ERROR_INVALID_STATE": "The object is not in a state that allows this operation.",
    "AWS_ERROR_PLATFORM_NOT_SUPPORTED": "This feature is not available on this platform.",
    "AWS_IO_DNS_INVALID_NAME": "The host name could not be resolved.",
    "AWS_IO_DNS_QUERY_FAILED": "The DNS query failed.",
    "AWS_IO_SOCKET_CONNECTION_REFUSED": "The connection was refused by the peer.",
    "AWS_IO_SOCKET_TIMEOUT": "The socket operation timed out.",
    "AWS_IO_SOCKET_CLOSED": "The socket is closed.",
    "AWS_IO_SOCKET_NO_ROUTE_TO_HOST": "No route to the host.",
    "AWS_IO_SOCKET_NETWORK_DOWN": "The network is down.",
    "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE": "The TLS handshake failed.",
    "AWS_IO_EVENT_LOOP_SHUTDOWN": "The event loop has shut down.",
}

_ACRONYMS = {"io", "tls", "dns", "http", "mqtt", "mqtt5", "s3", "crc", "cbor", "pkcs11", "alpn",
             "der", "ecc", "rsa", "sts", "imds", "ecs", "uri", "url", "id", "sdk", "ssl", "cal"}
_PREFIXES = ("AWS_ERROR_", "AWS_IO_", "AWS_AUTH_", "AWS_")


def message_for(name: str) -> str:
    """Return crtpy's message for an error name."""
    msg = _MESSAGES.get(name)
    if msg is not None:
        return msg
    stem = name
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    words = [w.upper() if w.lower() in _ACRONYMS else w.lower() for w in stem.split("_") if w]
    if not words:
        return name
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def code_of(name: str) -> int:
    """Numeric code of an error name; KeyError names a name missing from the table."""
    try:
        return CODE_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown crtpy error name {name!r}") from None


def error(name: str, message: str | None = None) -> Exception:
    """Build the exception for an error name, with an optional more specific message.

    Names that the reference maps to built-in exceptions give those built-ins."""
    from .exceptions import AwsCrtError

    builtin = BUILTIN_BY_NAME.get(name)
    text = message if message is not None else message_for(name)
    if builtin is not None:
        return builtin(text)
    return AwsCrtError(code_of(name), name, text)
