"""Private work behind :mod:`crtpy.crypto`: key parsing and the RSA, EC and Ed25519
operations, on top of the ``cryptography`` package (OpenSSL)."""
from __future__ import annotations

from typing import Any

from .. import _errors


def fail(name: str, message: str | None = None) -> BaseException:
    """Shorthand for the one error table."""
    return _errors.error(name, message)


def as_bytes(data: Any, what: str) -> bytes:
    """Accept any bytes-like object (not str) and return bytes (a copy only when the
    object is not already ``bytes``; key material and signatures are small)."""
    if data.__class__ is bytes:
        return data
    if isinstance(data, str) or data is None:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}")
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}") from None


def enum_value(value: Any, enum_type: Any, error_name: str) -> Any:
    """Convert an int-like algorithm/format argument to ``enum_type``."""
    if not isinstance(value, int):
        raise TypeError(f"{enum_type.__name__} expected, not {type(value).__name__}")
    try:
        return enum_type(value)
    except ValueError:
        raise fail(error_name, f"{value!r} is not a valid {enum_type.__name__}") from None
