"""CBOR error construction.

The reference runtime reports decoder failures synchronously as ``RuntimeError`` whose
text names the error; crtpy raises :class:`~crtpy.exceptions.AwsCrtError` (``.name``/``.code``
from the shared error table), which is a :class:`RuntimeError` too, so code written against
either keeps working.
"""
from __future__ import annotations

from .. import _errors

INVALID_CBOR = "AWS_ERROR_INVALID_CBOR"
UNEXPECTED_TYPE = "AWS_ERROR_CBOR_UNEXPECTED_TYPE"
RESOURCE_LIMIT = "AWS_ERROR_CBOR_RESOURCE_LIMIT_EXCEEDED"

_TEXT = {
    INVALID_CBOR: "The CBOR data is malformed or truncated.",
    UNEXPECTED_TYPE: "The next CBOR data item is not of the requested type.",
    RESOURCE_LIMIT: "The CBOR data exceeds the decoder's container size or nesting limits.",
}


def cbor_error(name: str) -> BaseException:
    """Return the exception for a CBOR error name, built through the shared error table
    (an AwsCrtError, which is also the RuntimeError the reference raises)."""
    return _errors.error(name, _TEXT.get(name))
