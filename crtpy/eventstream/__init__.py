"""Event-stream message headers, as used by AWS streaming APIs and the event-stream RPC
protocol (:mod:`crtpy.eventstream.rpc`).

An event-stream message carries a list of typed headers and a binary payload.  A
:class:`Header` is a (name, value, type) triple; build one with the ``Header.from_*``
class methods, which check that the value fits the wire type, and read it back with the
matching ``value_as_*`` method, which checks the type.

The binary framing (prelude, header block, payload and both CRC32 checksums) is
implemented by the private sans-I/O codec in :mod:`crtpy._eventstream.codec`.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any
from uuid import UUID

__all__ = ["Header", "HeaderType"]

_LIMITS = {
    "BYTE": (-(1 << 7), (1 << 7) - 1),
    "INT16": (-(1 << 15), (1 << 15) - 1),
    "INT32": (-(1 << 31), (1 << 31) - 1),
    "INT64": (-(1 << 63), (1 << 63) - 1),
}


class HeaderType(IntEnum):
    """The wire type of a header's value (the type byte of the encoded header)."""

    BOOL_TRUE = 0
    """Boolean true; no value bytes on the wire."""
    BOOL_FALSE = 1
    """Boolean false; no value bytes on the wire."""
    BYTE = 2
    """Signed 8-bit integer."""
    INT16 = 3
    """Signed 16-bit integer."""
    INT32 = 4
    """Signed 32-bit integer."""
    INT64 = 5
    """Signed 64-bit integer."""
    BYTE_BUF = 6
    """Binary data, at most 32767 bytes."""
    STRING = 7
    """UTF-8 text, at most 32767 bytes once encoded."""
    TIMESTAMP = 8
    """Milliseconds since the Unix epoch, as a signed 64-bit integer."""
    UUID = 9
    """A 16-byte UUID."""

    def __format__(self, format_spec: str) -> str:
        # Show the member's name in f-strings rather than its integer value.
        return str(self)


def _checked_int(value: Any, bounds: str, what: str) -> int:
    number = int(value)
    low, high = _LIMITS[bounds]
    if number < low or number > high:
        raise ValueError(f"Value {number} does not fit in {what}")
    return number


class Header:
    """One event-stream header: a name, a value and the value's :class:`HeaderType`.

    Prefer the ``Header.from_*`` constructors, which validate the value.

    Args:
        name (str): header name.
        value (Any): header value, of the Python type matching ``header_type``.
        header_type (HeaderType): wire type of the value.
    """

    def __init__(self, name: str, value: Any, header_type: HeaderType) -> None:
        self._name = name
        self._value = value
        self._type = header_type

    # -- constructors --------------------------------------------------------------
    @classmethod
    def from_bool(cls, name: str, value: bool) -> Header:
        """A boolean header (type :attr:`HeaderType.BOOL_TRUE` or :attr:`HeaderType.BOOL_FALSE`)."""
        if value:
            return cls(name, True, HeaderType.BOOL_TRUE)
        return cls(name, False, HeaderType.BOOL_FALSE)

    @classmethod
    def from_byte(cls, name: str, value: int) -> Header:
        """A signed 8-bit header.  Raises ValueError outside -128..127."""
        return cls(name, _checked_int(value, "BYTE", "a signed 8-bit byte"), HeaderType.BYTE)

    @classmethod
    def from_int16(cls, name: str, value: int) -> Header:
        """A signed 16-bit header.  Raises ValueError if the value does not fit."""
        return cls(name, _checked_int(value, "INT16", "a signed 16-bit int"), HeaderType.INT16)

    @classmethod
    def from_int32(cls, name: str, value: int) -> Header:
        """A signed 32-bit header.  Raises ValueError if the value does not fit."""
        return cls(name, _checked_int(value, "INT32", "a signed 32-bit int"), HeaderType.INT32)

    @classmethod
    def from_int64(cls, name: str, value: int) -> Header:
        """A signed 64-bit header.  Raises ValueError if the value does not fit."""
        return cls(name, _checked_int(value, "INT64", "a signed 64-bit int"), HeaderType.INT64)

    @classmethod
    def from_byte_buf(cls, name: str, value: bytes | bytearray) -> Header:
        """A binary header.  The data is kept as given (no copy)."""
        return cls(name, value, HeaderType.BYTE_BUF)

    @classmethod
    def from_string(cls, name: str, value: str) -> Header:
        """A text header; the value is converted with ``str()``."""
        return cls(name, str(value), HeaderType.STRING)

    @classmethod
    def from_timestamp(cls, name: str, value: int) -> Header:
        """A timestamp header, in milliseconds since the Unix epoch (signed 64-bit)."""
        return cls(name, _checked_int(value, "INT64", "the timestamp range (signed 64-bit)"),
                   HeaderType.TIMESTAMP)

    @classmethod
    def from_uuid(cls, name: str, value: UUID) -> Header:
        """A UUID header.  Raises TypeError unless ``value`` is a :class:`uuid.UUID`."""
        if not isinstance(value, UUID):
            raise TypeError(f"a UUID header needs a uuid.UUID value, got {type(value)}")
        return cls(name, value, HeaderType.UUID)

    # -- accessors ------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The header's name."""
        return self._name

    @property
    def type(self) -> HeaderType:
        """The header's :class:`HeaderType`."""
        return self._type

    @property
    def value(self) -> Any:
        """The header's value; its Python type follows :attr:`type`."""
        return self._value

    def _typed_value(self, expected: HeaderType) -> Any:
        if self._type != expected:
            raise TypeError(f"Header type is {self._type}, not {expected}")
        return self._value

    def value_as_bool(self) -> bool:
        """The value, if this is a boolean header; otherwise TypeError."""
        if self._type == HeaderType.BOOL_TRUE:
            return True
        if self._type == HeaderType.BOOL_FALSE:
            return False
        raise TypeError(f"Header type is {self._type}, not {HeaderType.BOOL_TRUE} "
                        f"or {HeaderType.BOOL_FALSE}")

    def value_as_byte(self) -> int:
        """The value, if this is a BYTE header; otherwise TypeError."""
        value: int = self._typed_value(HeaderType.BYTE)
        return value

    def value_as_int16(self) -> int:
        """The value, if this is an INT16 header; otherwise TypeError."""
        value: int = self._typed_value(HeaderType.INT16)
        return value

    def value_as_int32(self) -> int:
        """The value, if this is an INT32 header; otherwise TypeError."""
        value: int = self._typed_value(HeaderType.INT32)
        return value

    def value_as_int64(self) -> int:
        """The value, if this is an INT64 header; otherwise TypeError."""
        value: int = self._typed_value(HeaderType.INT64)
        return value

    def value_as_byte_buf(self) -> bytes | bytearray:
        """The value, if this is a BYTE_BUF header; otherwise TypeError."""
        value: bytes | bytearray = self._typed_value(HeaderType.BYTE_BUF)
        return value

    def value_as_string(self) -> str:
        """The value, if this is a STRING header; otherwise TypeError."""
        value: str = self._typed_value(HeaderType.STRING)
        return value

    def value_as_timestamp(self) -> int:
        """The value, if this is a TIMESTAMP header; otherwise TypeError."""
        value: int = self._typed_value(HeaderType.TIMESTAMP)
        return value

    def value_as_uuid(self) -> UUID:
        """The value, if this is a UUID header; otherwise TypeError."""
        value: UUID = self._typed_value(HeaderType.UUID)
        return value

    # -- misc -------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self._name}: {self._value!r} <{self._type.name}>"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, {self._value!r}, {self._type!r})"
