"""Request body sources: wrapping of user streams, and reading them without copies."""
from __future__ import annotations

import io
from typing import Any


def wrap_stream(stream: Any, allow_none: bool = False) -> Any:
    """Return ``stream`` as a ``crtpy.io.InputStream`` (None stays None when allowed)."""
    from ..io import InputStream

    if stream is None:
        if allow_none:
            return None
        raise TypeError("an I/O stream (an object with read() or readinto()) is expected, got None")
    return InputStream.wrap(stream)


def _raw(stream: Any) -> Any:
    """The underlying file-like object of an InputStream, if it keeps one."""
    for attr in ("_stream", "stream"):
        inner = getattr(stream, attr, None)
        if inner is not None and (hasattr(inner, "readinto") or hasattr(inner, "read")):
            return inner
    return stream


def read_into(stream: Any, buf: memoryview) -> int | None:
    """Fill ``buf`` from ``stream``.  Returns the number of bytes, 0 at end of stream,
    or None when a non-blocking stream has no data right now."""
    readinto = getattr(stream, "_read_into", None) or getattr(stream, "readinto", None)
    if readinto is not None:
        try:
            n: int | None = readinto(buf)
        except BlockingIOError:
            return None
        return n
    try:
        data = stream.read(len(buf))
    except BlockingIOError:
        return None
    if data is None:
        return None
    n = len(data)
    buf[:n] = data
    return n


def known_length(stream: Any) -> int | None:
    """Bytes left in a seekable stream, or None when unknown."""
    raw = _raw(stream)
    if isinstance(raw, io.BytesIO):
        return len(raw.getbuffer()) - raw.tell()
    try:
        if raw.seekable():
            pos: int = raw.tell()
            end: int = raw.seek(0, io.SEEK_END)
            raw.seek(pos)
            return end - pos
    except (AttributeError, OSError, ValueError):
        pass
    return None
