"""Mapping of socket, DNS and TLS exceptions to AwsCrtError names of the reference."""
from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from .._errors import error

_ERRNO_NAMES: dict[int, str] = {
    errno.ECONNREFUSED: "AWS_IO_SOCKET_CONNECTION_REFUSED",
    errno.ETIMEDOUT: "AWS_IO_SOCKET_TIMEOUT",
    errno.EHOSTUNREACH: "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
    errno.ENETUNREACH: "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
    errno.EADDRNOTAVAIL: "AWS_IO_SOCKET_INVALID_ADDRESS",
    errno.ENETDOWN: "AWS_IO_SOCKET_NETWORK_DOWN",
    errno.ECONNABORTED: "AWS_IO_SOCKET_CONNECT_ABORTED",
    errno.ECONNRESET: "AWS_IO_SOCKET_CLOSED",
    errno.EPIPE: "AWS_IO_SOCKET_CLOSED",
    errno.ENOTCONN: "AWS_IO_SOCKET_NOT_CONNECTED",
    errno.EADDRINUSE: "AWS_IO_SOCKET_ADDRESS_IN_USE",
    errno.EAFNOSUPPORT: "AWS_IO_SOCKET_UNSUPPORTED_ADDRESS_FAMILY",
    errno.EINVAL: "AWS_IO_SOCKET_INVALID_OPTIONS",
    errno.EACCES: "AWS_ERROR_NO_PERMISSION",
    errno.EPERM: "AWS_ERROR_NO_PERMISSION",
    errno.ENOENT: "AWS_ERROR_FILE_INVALID_PATH",
}

_GAI_NAMES: dict[int, str] = {
    socket.EAI_NONAME: "AWS_IO_DNS_INVALID_NAME",
    socket.EAI_SERVICE: "AWS_IO_DNS_INVALID_NAME",
    socket.EAI_AGAIN: "AWS_IO_DNS_QUERY_FAILED",
    socket.EAI_FAIL: "AWS_IO_DNS_QUERY_FAILED",
    socket.EAI_FAMILY: "AWS_IO_SOCKET_UNSUPPORTED_ADDRESS_FAMILY",
    socket.EAI_MEMORY: "AWS_ERROR_OOM",
}
for _attr in ("EAI_NODATA", "EAI_ADDRFAMILY"):
    if hasattr(socket, _attr):
        _GAI_NAMES[getattr(socket, _attr)] = "AWS_IO_DNS_NO_ADDRESS_FOR_HOST"


def _where(context: str | None) -> str:
    return f" ({context})" if context else ""


def map_connect_error(exc: BaseException, context: str | None = None) -> BaseException:
    """Translate an exception raised while resolving, connecting or negotiating TLS into
    the ``AwsCrtError`` the reference runtime reports for the same failure.

    AwsCrtError and exceptions that are not network errors (CancelledError, TypeError,
    ...) are returned unchanged."""
    from ..exceptions import AwsCrtError

    if isinstance(exc, AwsCrtError):
        return exc
    where = _where(context)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        return _chain(error("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE",
                            f"TLS negotiation failed: certificate verification failed: {detail}{where}"), exc)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        return _chain(error("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE",
                            f"TLS negotiation failed: {reason}{where}"), exc)
    if isinstance(exc, socket.gaierror):
        name = _GAI_NAMES.get(exc.errno or 0, "AWS_IO_DNS_QUERY_FAILED")
        return _chain(error(name, f"host resolution failed: {exc.strerror or exc}{where}"), exc)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not getattr(exc, "errno", None):
        return _chain(error("AWS_IO_SOCKET_TIMEOUT", f"the connection attempt timed out{where}"), exc)
    if isinstance(exc, UnicodeError):
        return _chain(error("AWS_IO_DNS_INVALID_NAME", f"invalid host name{where}"), exc)
    if isinstance(exc, OSError):
        mapped = _ERRNO_NAMES.get(exc.errno or 0)
        if mapped is not None:
            name = mapped
        else:
            if isinstance(exc, ConnectionError):
                name = "AWS_IO_SOCKET_CLOSED"
            else:
                name = "AWS_ERROR_SYS_CALL_FAILURE"
        return _chain(error(name, f"{exc.strerror or exc}{where}"), exc)
    return exc


def _chain(new: BaseException, cause: BaseException) -> BaseException:
    new.__cause__ = cause
    return new
