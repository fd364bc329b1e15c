"""Correlation tokens inside JSON response payloads.

A response path names its token with a dotted path (``"clientToken"``,
``"a.b.token"``): each segment is a key of a JSON object, and the value reached must
be a string.  Anything else (not JSON, not an object, missing key, non-string value)
means the payload carries no token for that path.
"""
from __future__ import annotations

import json
from typing import Any

_MISSING = object()


def parse(payload: bytes | bytearray | memoryview | None) -> Any:
    """The decoded JSON document, or ``_MISSING`` when the payload is not JSON."""
    if not payload:
        return _MISSING
    try:
        return json.loads(bytes(payload))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _MISSING


def extract(document: Any, path: str) -> str | None:
    """The string at dotted ``path`` in an already parsed ``document``, or None."""
    if document is _MISSING:
        return None
    node = document
    for segment in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(segment, _MISSING)
        if node is _MISSING:
            return None
    return node if isinstance(node, str) else None


def token_at(payload: bytes | bytearray | memoryview | None, path: str) -> str | None:
    """The correlation token at ``path`` in ``payload`` (JSON), or None."""
    return extract(parse(payload), path)
