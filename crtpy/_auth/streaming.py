"""Signing of streamed payloads, for the S3 client and event-stream RPC.

* aws-chunked payloads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` and the trailer variant):
  each chunk's signature chains from the previous one, starting with the request's
  (seed) signature; :func:`encode_chunk` builds ``hex-size;chunk-signature=...\\r\\n`` frames
  and :meth:`ChunkSigner.sign_trailer` signs the trailing headers.
* event streams (``STREAMING-AWS4-HMAC-SHA256-EVENTS``): :meth:`EventSigner.sign_event`
  returns the ``:date`` and ``:chunk-signature`` header values for one message payload.

SigV4a variants use the ``AWS4-ECDSA-P256-SHA256-PAYLOAD`` / ``-TRAILER`` labels and the
credentials' derived ECDSA key.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone

from .._errors import error
from . import signing as S
from . import sigv4a

Buffer = bytes | bytearray | memoryview

_EMPTY_SHA256 = S.EMPTY_SHA256
#: SigV4a signatures (DER, variable length) are padded with "*" to this many hex digits
#: where a fixed length is needed (aws-chunked frames), and unpadded before chaining.
SIGV4A_PADDED_LEN = 144


def pad_sigv4a_signature(signature: str) -> str:
    return signature.ljust(SIGV4A_PADDED_LEN, "*")


def trim_sigv4a_signature(signature: str) -> str:
    return signature.rstrip("*")


class _Base:
    def __init__(self, access_key_id: str, secret_access_key: str, params: S.SigningParams,
                 seed_signature: str, date: datetime | None = None) -> None:
        if not seed_signature:
            raise error("AWS_AUTH_SIGNING_MISSING_PREVIOUS_SIGNATURE")
        self._akid = access_key_id
        self._secret = secret_access_key
        self._params = params
        self._asymmetric = params.algorithm == S.V4_ASYMMETRIC
        self._date = date or params.date or datetime.now(timezone.utc)
        self.previous_signature = trim_sigv4a_signature(seed_signature)

    def _scope(self, stamp: str) -> str:
        day = stamp[:8]
        if self._asymmetric:
            return f"{day}/{self._params.service}/aws4_request"
        return f"{day}/{self._params.region}/{self._params.service}/aws4_request"

    def _sign(self, string_to_sign: str, stamp: str) -> str:
        if self._asymmetric:
            return sigv4a.sign_hex(self._akid, self._secret, string_to_sign.encode())
        key = S.signing_hmac_key(self._secret, stamp[:8], self._params.region, self._params.service)
        return key.digest(string_to_sign.encode()).hex()


class ChunkSigner(_Base):
    """Signs the chunks (and the trailer) of an aws-chunked body, in order."""

    def _label(self, kind: str) -> str:
        return (S.ECDSA_ALGORITHM if self._asymmetric else S.HMAC_ALGORITHM) + "-" + kind

    def sign_chunk(self, data: Buffer) -> str:
        """Hex signature of the next chunk (the empty final chunk included)."""
        stamp = S.amz_date(self._date)
        sts = "\n".join((self._label("PAYLOAD"), stamp, self._scope(stamp), self.previous_signature,
                         _EMPTY_SHA256, hashlib.sha256(data).hexdigest()))
        sig = self._sign(sts, stamp)
        self.previous_signature = sig
        return sig

    def sign_trailer(self, trailing_headers: Iterable[tuple[str, str]]) -> str:
        """Hex signature of the trailing headers (after the final chunk)."""
        stamp = S.amz_date(self._date)
        canonical = "".join(f"{name.lower()}:{S.canonical_header_value(value)}\n"
                            for name, value in sorted(trailing_headers, key=lambda p: p[0].lower()))
        sts = "\n".join((self._label("TRAILER"), stamp, self._scope(stamp), self.previous_signature,
                         hashlib.sha256(canonical.encode()).hexdigest()))
        sig = self._sign(sts, stamp)
        self.previous_signature = sig
        return sig


def encode_chunk(data: Buffer, signature: str) -> list[Buffer]:
    """Pieces of one signed aws-chunked frame (no copy of ``data``).  A SigV4a signature
    is padded to its fixed length."""
    if len(signature) != 64:
        signature = pad_sigv4a_signature(signature)
    head = f"{len(data):x};chunk-signature={signature}\r\n".encode()
    return [head, data, b"\r\n"]


def encode_unsigned_chunk(data: Buffer) -> list[Buffer]:
    """Pieces of one frame of an unsigned aws-chunked body
    (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``)."""
    return [f"{len(data):x}\r\n".encode(), data, b"\r\n"]


def encode_unsigned_trailer(trailing_headers: Iterable[tuple[str, str]]) -> bytes:
    """The final empty chunk and the trailing headers of an unsigned aws-chunked body."""
    lines = "".join(f"{name}:{value}\r\n" for name, value in trailing_headers)
    return f"0\r\n{lines}\r\n".encode()


def encode_trailer(trailing_headers: Iterable[tuple[str, str]], signature: str) -> bytes:
    """The trailer block following the final (empty) chunk."""
    if len(signature) != 64:
        signature = pad_sigv4a_signature(signature)
    lines = "".join(f"{name}:{value}\r\n" for name, value in trailing_headers)
    return f"{lines}x-amz-trailer-signature:{signature}\r\n\r\n".encode()


def chunked_length(payload_length: int, chunk_size: int, signature_len: int = 64,
                   trailer_length: int = 0) -> int:
    """Content-Length of an aws-chunked body (for ``Content-Length`` with
    ``x-amz-decoded-content-length``)."""
    def frame(n: int) -> int:
        return len(f"{n:x}") + len(";chunk-signature=") + signature_len + 2 + n + 2

    full, rest = divmod(payload_length, chunk_size)
    total = full * frame(chunk_size) + (frame(rest) if rest else 0)
    return total + frame(0) + trailer_length


def _encode_date_header(millis: int) -> bytes:
    # event-stream header: name length, name, type 8 (timestamp), int64 big-endian
    return b"\x05:date\x08" + millis.to_bytes(8, "big", signed=True)


class EventSigner(_Base):
    """Signs event-stream messages; each signature chains from the previous one."""

    def sign_event(self, payload: Buffer, date: datetime | None = None) -> tuple[int, bytes]:
        """Return (``:date`` in epoch milliseconds, ``:chunk-signature`` bytes) for a
        message whose encoded bytes are ``payload`` (empty for the closing frame)."""
        when = date or datetime.now(timezone.utc)
        seconds = int(when.timestamp())
        millis = seconds * 1000
        stamp = S.amz_date(datetime.fromtimestamp(seconds, timezone.utc))
        label = (S.ECDSA_ALGORITHM if self._asymmetric else S.HMAC_ALGORITHM) + "-PAYLOAD"
        sts = "\n".join((label, stamp, self._scope(stamp), self.previous_signature,
                         hashlib.sha256(_encode_date_header(millis)).hexdigest(),
                         hashlib.sha256(payload).hexdigest()))
        sig = self._sign(sts, stamp)
        self.previous_signature = sig
        return millis, bytes.fromhex(sig)
