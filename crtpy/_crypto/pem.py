"""PEM armour: split a text into (label, DER) objects."""
from __future__ import annotations

import base64
import binascii
import re

from . import fail

_BEGIN = re.compile(rb"-----BEGIN ([^-\r\n]*)-----")
_END = re.compile(rb"-----END ([^-\r\n]*)-----")


def parse(data: bytes) -> list[tuple[str, bytes]]:
    """Return every PEM object in ``data`` as ``(label, der)``.

    Text around the objects is ignored.  No object at all, a BEGIN line without an END
    line, or a body that is not base64 raises ``AWS_ERROR_PEM_MALFORMED``."""
    objects: list[tuple[str, bytes]] = []
    pos = 0
    while True:
        begin = _BEGIN.search(data, pos)
        if begin is None:
            break
        end = _END.search(data, begin.end())
        if end is None:
            raise fail("AWS_ERROR_PEM_MALFORMED", "PEM object has no END line")
        body = b"".join(data[begin.end():end.start()].split())
        try:
            der = base64.b64decode(body, validate=True) if body else b""
        except (binascii.Error, ValueError):
            raise fail("AWS_ERROR_PEM_MALFORMED", "PEM body is not valid base64") from None
        if not der:
            raise fail("AWS_ERROR_PEM_MALFORMED", "PEM object is empty")
        objects.append((begin.group(1).decode("ascii", "replace").strip(), der))
        pos = end.end()
    if not objects:
        raise fail("AWS_ERROR_PEM_MALFORMED", "no PEM object found")
    return objects
