"""Hashes, HMAC and public-key cryptography (RSA, ECDSA, Ed25519).

Hashes and HMAC run on :mod:`hashlib` / :mod:`hmac` (OpenSSL); the key operations run on
the ``cryptography`` package.  Errors carry the AWS Common Runtime's error names
(``AWS_ERROR_CAL_*``, ``AWS_ERROR_PEM_MALFORMED``...); verification returns ``False``
for any signature that does not check out, it never raises for a bad signature.
"""
from __future__ import annotations

import hashlib as _hashlib
import hmac as _hmac
from enum import IntEnum
from operator import index as _index
from typing import Any, NamedTuple

from . import NativeResource, _errors
from ._crypto import as_bytes as _as_bytes
from ._crypto import enum_value as _enum_value

__all__ = [
    "EC",
    "ED25519",
    "HMAC",
    "RSA",
    "ECExportFormat",
    "ECPublicCoords",
    "ECRawSignature",
    "ECType",
    "ED25519ExportFormat",
    "Hash",
    "RSAEncryptionAlgorithm",
    "RSASignatureAlgorithm",
]

_md5 = _hashlib.md5
_sha1 = _hashlib.sha1
_sha256 = _hashlib.sha256
_HASH_TYPE = type(_sha256())
_new_object = object.__new__


try:
    # OpenSSL's HMAC object, as hmac.new() uses it, without hmac.HMAC's Python layer.
    from _hashlib import hmac_new as _openssl_hmac_new

    def _hmac_sha256(key: bytes) -> Any:
        return _openssl_hmac_new(key, digestmod="sha256")

except ImportError:  # pragma: no cover - CPython without OpenSSL, or another interpreter

    def _hmac_sha256(key: bytes) -> Any:
        return _hmac.new(key, digestmod=_sha256)


def _finished() -> BaseException:
    return _errors.error("AWS_ERROR_INVALID_STATE", "digest() was already called on this object")


def _not_bytes(value: Any) -> BaseException:
    return TypeError(f"a bytes-like object or str is required, not {type(value).__name__}")


# MD5 of a large message: the OpenSSL 3.0 that CPython's hashlib links here hashes MD5
# about 5% slower than the reference's libcrypto, while the newer OpenSSL bundled with
# ``cryptography`` keeps up with it (64 MiB: 764 / 802 / 804 MB/s).  Its per-call cost
# is higher, so it is only picked when the first update is big (see Hash.update).
_BULK_MD5_MIN = 16 * 1024  # break-even near 9 KiB: +0.6 µs per call, -5% per byte


class _BulkMd5:
    """MD5 on ``cryptography``'s OpenSSL, with hashlib's update/digest interface."""

    __slots__ = ("_h",)

    def __init__(self, data: Any) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = hashes.Hash(hashes.MD5())
        self.update(data)

    def update(self, data: Any) -> None:
        try:
            self._h.update(data)
        except TypeError:
            # Only flat byte buffers are taken as they are; view others as bytes (no copy).
            self._h.update(memoryview(data).cast("B"))

    def digest(self) -> bytes:
        return self._h.finalize()



def _truncate(digest: bytes, truncate_to: Any) -> bytes:
    n = _index(truncate_to)
    if 0 < n < len(digest):
        return digest[:n]
    return digest


class Hash:
    """A streaming MD5, SHA-1 or SHA-256 computation.

    Create one with :meth:`md5_new`, :meth:`sha1_new` or :meth:`sha256_new`, feed it
    with :meth:`update` (bytes-like objects, or ``str`` hashed as UTF-8) and read the
    result once with :meth:`digest`; the object cannot be used after that.
    """

    # ``_hash`` is the hashlib constructor until the first update (the hash object is
    # then built with that data: one call, and no per-object lock for big first
    # updates), then the hashlib object, and None once digest() was called.
    __slots__ = ("_hash",)

    def __init__(self, native_handle: Any) -> None:
        # Internal: use the *_new() factories.
        self._hash = native_handle

    # The factories fill the slot directly, without a Python-level __init__ call: the
    # hash of a short message is dominated by per-call costs.
    @staticmethod
    def sha1_new() -> Hash:
        """Start a SHA-1 computation."""
        h = _new_object(Hash)
        h._hash = _sha1
        return h

    @staticmethod
    def sha256_new() -> Hash:
        """Start a SHA-256 computation."""
        h = _new_object(Hash)
        h._hash = _sha256
        return h

    @staticmethod
    def md5_new() -> Hash:
        """Start an MD5 computation."""
        h = _new_object(Hash)
        h._hash = _md5
        return h

    def update(self, to_hash: bytes | bytearray | memoryview | str) -> None:
        """Feed more data."""
        h = self._hash
        try:
            if h.__class__ is _HASH_TYPE:
                h.update(to_hash)  # type: ignore[arg-type]
            elif h is None:
                raise _finished()
            elif h.__class__ is _BulkMd5:
                h.update(to_hash)
            elif h is _md5 and len(to_hash) >= _BULK_MD5_MIN:
                self._hash = _BulkMd5(to_hash)
            else:
                self._hash = h(to_hash)
        except TypeError:
            if not isinstance(to_hash, str):
                raise _not_bytes(to_hash) from None
            self.update(to_hash.encode("utf-8"))

    def digest(self, truncate_to: int = 0) -> bytes:
        """Finish and return the digest, cut to ``truncate_to`` bytes when that is
        between 1 and the digest size."""
        h = self._hash
        if h is None:
            raise _finished()
        self._hash = None
        if h.__class__ is not _HASH_TYPE and h.__class__ is not _BulkMd5:
            h = h()
        # The slot holds a hashlib object or a _BulkMd5 by now; both digest to bytes.
        digest: bytes = h.digest()
        if truncate_to:
            return _truncate(digest, truncate_to)
        return digest


class HMAC:
    """A streaming HMAC-SHA256 computation.

    Create one with :meth:`sha256_hmac_new`, feed it with :meth:`update` and read the
    result once with :meth:`digest`.
    """

    __slots__ = ("_hmac",)

    def __init__(self, native_handle: Any) -> None:
        # Internal: use sha256_hmac_new().
        self._hmac = native_handle

    @staticmethod
    def sha256_hmac_new(secret_key: bytes | bytearray | memoryview | str) -> HMAC:
        """Start an HMAC-SHA256 computation keyed with ``secret_key``."""
        if secret_key.__class__ is bytes:
            key = secret_key
        elif isinstance(secret_key, str):
            key = secret_key.encode("utf-8")
        else:
            key = _as_bytes(secret_key, "secret_key")
        h = _new_object(HMAC)
        h._hmac = _hmac_sha256(key)
        return h

    def update(self, to_hmac: bytes | bytearray | memoryview | str) -> None:
        """Feed more data."""
        try:
            self._hmac.update(to_hmac)
        except AttributeError:
            raise _finished() from None
        except TypeError:
            if isinstance(to_hmac, str):
                self._hmac.update(to_hmac.encode("utf-8"))
            else:
                raise _not_bytes(to_hmac) from None

    def digest(self, truncate_to: int = 0) -> bytes:
        """Finish and return the MAC, cut to ``truncate_to`` bytes when that is between
        1 and 32."""
        h = self._hmac
        if h is None:
            raise _finished()
        self._hmac = None
        mac: bytes = h.digest()
        if truncate_to:
            return _truncate(mac, truncate_to)
        return mac


# ---------------------------------------------------------------- RSA
class RSAEncryptionAlgorithm(IntEnum):
    """Padding used by :meth:`RSA.encrypt` and :meth:`RSA.decrypt`."""

    PKCS1_5 = 0
    """PKCS #1 v1.5 padding."""

    OAEP_SHA256 = 1
    """OAEP with SHA-256 (and MGF1-SHA-256)."""

    OAEP_SHA512 = 2
    """OAEP with SHA-512 (and MGF1-SHA-512)."""


class RSASignatureAlgorithm(IntEnum):
    """Padding and digest used by :meth:`RSA.sign` and :meth:`RSA.verify`."""

    PKCS1_5_SHA256 = 0
    """PKCS #1 v1.5 over a SHA-256 digest."""

    PKCS1_5_SHA1 = 1
    """PKCS #1 v1.5 over a SHA-1 digest."""

    PSS_SHA256 = 2
    """PSS over a SHA-256 digest (MGF1-SHA-256, 32-byte salt)."""


# The key classes import their crtpy._crypto module on first use, so that importing
# crtpy.crypto does not load ``cryptography``.
class RSA(NativeResource):
    """An RSA key pair, or only its public half.

    Keys are loaded from PEM (``RSA PRIVATE KEY`` / PKCS #1, ``PRIVATE KEY`` / PKCS #8,
    ``RSA PUBLIC KEY`` / PKCS #1) or from PKCS #1 DER.
    """

    def __init__(self, binding: Any) -> None:
        super().__init__()
        self._binding = binding

    def __repr__(self) -> str:
        return f"<crtpy.crypto.RSA {self._binding!r}>"

    @staticmethod
    def new_private_key_from_pem_data(pem_data: str | bytes | bytearray | memoryview) -> RSA:
        """Load a private key from the first object of PEM text.

        Raises ValueError when that object is not an RSA private key."""
        data = pem_data.encode("ascii", "replace") if isinstance(pem_data, str) else _as_bytes(pem_data, "pem_data")
        from ._crypto import rsa as _rsa
        return RSA(_rsa.private_from_pem(data))

    @staticmethod
    def new_public_key_from_pem_data(pem_data: str | bytes | bytearray | memoryview) -> RSA:
        """Load a public key from the first object of PEM text (``RSA PUBLIC KEY``).

        Raises ValueError when that object is not an RSA public key."""
        data = pem_data.encode("ascii", "replace") if isinstance(pem_data, str) else _as_bytes(pem_data, "pem_data")
        from ._crypto import rsa as _rsa
        return RSA(_rsa.public_from_pem(data))

    @staticmethod
    def new_private_key_from_der_data(der_data: bytes | bytearray | memoryview) -> RSA:
        """Load a private key from PKCS #1 ``RSAPrivateKey`` DER."""
        from ._crypto import rsa as _rsa
        return RSA(_rsa.private_from_der(_as_bytes(der_data, "der_data")))

    @staticmethod
    def new_public_key_from_der_data(der_data: bytes | bytearray | memoryview) -> RSA:
        """Load a public key from PKCS #1 ``RSAPublicKey`` DER."""
        from ._crypto import rsa as _rsa
        return RSA(_rsa.public_from_der(_as_bytes(der_data, "der_data")))

    def encrypt(self, encryption_algorithm: RSAEncryptionAlgorithm,
                plaintext: bytes | bytearray | memoryview) -> bytes:
        """Encrypt one block with the public key."""
        alg = _enum_value(encryption_algorithm, RSAEncryptionAlgorithm, "AWS_ERROR_CAL_UNSUPPORTED_ALGORITHM")
        from ._crypto import rsa as _rsa
        return _rsa.encrypt(self._binding, alg, _as_bytes(plaintext, "plaintext"))

    def decrypt(self, encryption_algorithm: RSAEncryptionAlgorithm,
                ciphertext: bytes | bytearray | memoryview) -> bytes:
        """Decrypt one block with the private key."""
        alg = _enum_value(encryption_algorithm, RSAEncryptionAlgorithm, "AWS_ERROR_CAL_UNSUPPORTED_ALGORITHM")
        from ._crypto import rsa as _rsa
        return _rsa.decrypt(self._binding, alg, _as_bytes(ciphertext, "ciphertext"))

    def sign(self, signature_algorithm: RSASignatureAlgorithm,
             digest: bytes | bytearray | memoryview) -> bytes:
        """Sign a message digest (not the message: hash it first) with the private key."""
        alg = _enum_value(signature_algorithm, RSASignatureAlgorithm, "AWS_ERROR_CAL_UNSUPPORTED_ALGORITHM")
        from ._crypto import rsa as _rsa
        return _rsa.sign(self._binding, alg, _as_bytes(digest, "digest"))

    def verify(self, signature_algorithm: RSASignatureAlgorithm,
               digest: bytes | bytearray | memoryview,
               signature: bytes | bytearray | memoryview) -> bool:
        """Return whether ``signature`` is a valid signature of ``digest``."""
        alg = _enum_value(signature_algorithm, RSASignatureAlgorithm, "AWS_ERROR_CAL_UNSUPPORTED_ALGORITHM")
        from ._crypto import rsa as _rsa
        return _rsa.verify(self._binding, alg, _as_bytes(digest, "digest"),
                                  _as_bytes(signature, "signature"))


# ---------------------------------------------------------------- Ed25519
class ED25519ExportFormat(IntEnum):
    """Encodings of Ed25519 keys."""

    RAW = 0
    """The bare 32-byte key."""

    OPENSSH_B64 = 1
    """Base64 of the OpenSSH encoding (RFC 8709 public key blob, or the
    ``openssh-key-v1`` container for a private key), without PEM armour."""


class ED25519(NativeResource):
    """An Ed25519 key pair."""

    def __init__(self, binding: Any) -> None:
        super().__init__()
        self._binding = binding

    def __repr__(self) -> str:
        return "<crtpy.crypto.ED25519>"

    @staticmethod
    def new_generate() -> ED25519:
        """Generate a new random key pair."""
        from ._crypto import ed25519 as _ed25519
        return ED25519(_ed25519.generate())

    def export_public_key(self, export_format: ED25519ExportFormat) -> bytes:
        """Return the public key in ``export_format``."""
        fmt = _enum_value(export_format, ED25519ExportFormat, "AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT")
        from ._crypto import ed25519 as _ed25519
        impl = _ed25519
        if fmt == ED25519ExportFormat.RAW:
            return impl.public_raw(self._binding)
        return impl.public_openssh(self._binding)

    def export_private_key(self, export_format: ED25519ExportFormat) -> bytes:
        """Return the private key in ``export_format``."""
        fmt = _enum_value(export_format, ED25519ExportFormat, "AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT")
        from ._crypto import ed25519 as _ed25519
        impl = _ed25519
        if fmt == ED25519ExportFormat.RAW:
            return impl.private_raw(self._binding)
        return impl.private_openssh(self._binding)


# ---------------------------------------------------------------- EC
class ECType(IntEnum):
    """Supported elliptic curves."""

    P_256 = 0
    """NIST P-256 (secp256r1)."""

    P_384 = 1
    """NIST P-384 (secp384r1)."""


class ECExportFormat(IntEnum):
    """DER encodings of EC keys."""

    SEC1 = 0
    """``ECPrivateKey`` (RFC 5915), the body of an ``EC PRIVATE KEY`` PEM."""

    PKCS8 = 1
    """``PrivateKeyInfo`` (RFC 5208), the body of a ``PRIVATE KEY`` PEM."""

    SPKI = 2
    """``SubjectPublicKeyInfo`` (RFC 5480), the body of a ``PUBLIC KEY`` PEM."""


class ECRawSignature(NamedTuple):
    """An ECDSA signature as the big-endian bytes of r and s."""

    r: bytes
    s: bytes


class ECPublicCoords(NamedTuple):
    """The affine coordinates of an EC public key, big-endian, padded to the field size."""

    x: bytes
    y: bytes


class EC(NativeResource):
    """An ECDSA key pair, or only its public half, on P-256 or P-384."""

    def __init__(self, binding: Any) -> None:
        super().__init__()
        self._binding = binding

    def __repr__(self) -> str:
        return f"<crtpy.crypto.EC {self._binding!r}>"

    @staticmethod
    def new_generate(type: ECType) -> EC:
        """Generate a new random key pair on curve ``type``."""
        curve = _enum_value(type, ECType, "AWS_ERROR_CAL_UNSUPPORTED_ALGORITHM")
        from ._crypto import ec as _ec
        return EC(_ec.generate(curve))

    @staticmethod
    def new_key_from_der_data(der_data: bytes | bytearray | memoryview) -> EC:
        """Load a key from DER in any :class:`ECExportFormat` (detected from the data;
        no PEM armour)."""
        from ._crypto import ec as _ec
        return EC(_ec.load_der(_as_bytes(der_data, "der_data")))

    @staticmethod
    def decode_der_signature(signature: bytes) -> ECRawSignature:
        """Split a DER ECDSA signature into r and s (minimal big-endian bytes)."""
        from ._crypto import ec as _ec
        r, s = _ec.decode_signature(_as_bytes(signature, "signature"))
        return ECRawSignature(r=r, s=s)

    @staticmethod
    def decode_der_signature_to_padded_pair(signature: bytes, pad_to: int) -> bytes:
        """Return ``r || s`` from a DER signature, each left-padded with zeros to
        ``pad_to`` bytes (the coordinate size: 32 for P-256, 48 for P-384), as JWS uses."""
        from ._crypto import ec as _ec
        return _ec.padded_pair(_as_bytes(signature, "signature"), _index(pad_to))

    @staticmethod
    def encode_raw_signature(signature: ECRawSignature) -> bytes:
        """Encode r and s as a DER ECDSA signature."""
        r, s = signature.r, signature.s
        if isinstance(r, str) or isinstance(s, str):
            raise TypeError("r and s must be bytes-like objects")
        from ._crypto import ec as _ec
        return _ec.encode_signature(_as_bytes(r, "r"), _as_bytes(s, "s"))

    def export_key(self, export_format: ECExportFormat) -> bytes:
        """Return the key as DER in ``export_format``."""
        fmt = _enum_value(export_format, ECExportFormat, "AWS_ERROR_UNSUPPORTED_OPERATION")
        from ._crypto import ec as _ec
        return _ec.export(self._binding, fmt)

    def get_public_coords(self) -> ECPublicCoords:
        """Return the public point's coordinates."""
        from ._crypto import ec as _ec
        x, y = _ec.public_coords(self._binding)
        return ECPublicCoords(x=x, y=y)

    def sign(self, digest: bytes | bytearray | memoryview) -> bytes:
        """Sign a message digest (hash the message first) and return a DER signature."""
        from ._crypto import ec as _ec
        return _ec.sign(self._binding, _as_bytes(digest, "digest"))

    def verify(self, digest: bytes | bytearray | memoryview,
               signature: bytes | bytearray | memoryview) -> bool:
        """Return whether the DER ``signature`` is valid for ``digest``."""
        from ._crypto import ec as _ec
        return _ec.verify(self._binding, _as_bytes(digest, "digest"), _as_bytes(signature, "signature"))
