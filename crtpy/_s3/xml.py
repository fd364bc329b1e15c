"""The little XML S3 exchanges need: upload ids, error codes, CompleteMultipartUpload.

Parsing is lenient about names that servers spell differently (any element whose local
name is ``UploadId`` inside ``InitiateMultipartUploadResult`` or ``InitiateMultipartUpload``,
with or without a namespace) and never resolves entities.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from . import checksums as C

_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_UPLOAD_ID = re.compile(rb"<(?:\w+:)?UploadId>\s*([^<]*?)\s*</(?:\w+:)?UploadId>")
_ERROR_ROOT = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?<(?:\w+:)?Error[\s>]")
_CODE = re.compile(rb"<(?:\w+:)?Code>\s*([^<]*?)\s*</(?:\w+:)?Code>")


def escape(text: str) -> str:
    """XML character data: ``&``, ``<`` and ``>`` escaped (what ``xml.sax.saxutils.escape``
    does, without importing it: it pulls in urllib.request, http.client and email)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


def upload_id(body: bytes) -> str | None:
    """The UploadId of a CreateMultipartUpload reply, or None."""
    m = _UPLOAD_ID.search(body)
    return _unescape(m.group(1)) if m else None


def error_code(body: bytes | None) -> str | None:
    """The <Code> of an S3 <Error> document, or None."""
    if not body:
        return None
    m = _CODE.search(body[:64 * 1024])
    return _unescape(m.group(1)) if m else None


def error_in_ok_body(pieces: Sequence[bytes]) -> str | None:
    """For a 200 response whose body is an <Error> document, its code (else None)."""
    if not pieces:
        return None
    head = b"".join(pieces[:4])[:4096] if len(pieces) > 1 else pieces[0][:4096]
    if not _ERROR_ROOT.match(head):
        return None
    return error_code(b"".join(pieces)) or "UnknownError"


def complete_body(parts: list[dict[str, Any]], algorithm: int | None) -> bytes:
    """The CompleteMultipartUpload document for the uploaded parts (in order)."""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUpload xmlns="{_NS}">']
    tag = C.xml_name(algorithm) if algorithm is not None else None
    for p in parts:
        out.append(f"<Part><ETag>{escape(p['etag'])}</ETag><PartNumber>{p['number']}</PartNumber>")
        if tag and p.get("checksum"):
            out.append(f"<{tag}>{p['checksum']}</{tag}>")
        out.append("</Part>")
    out.append("</CompleteMultipartUpload>")
    return "".join(out).encode()
