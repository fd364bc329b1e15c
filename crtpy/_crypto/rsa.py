"""RSA keys (PKCS#1 and PKCS#8) and their operations, on ``cryptography``."""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from . import der, fail, pem

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"

# Digest lengths of the signature algorithms, by RSASignatureAlgorithm value.
_SIGN_HASHES: dict[int, hashes.HashAlgorithm] = {
    0: hashes.SHA256(),  # PKCS1_5_SHA256
    1: hashes.SHA1(),  # PKCS1_5_SHA1
    2: hashes.SHA256(),  # PSS_SHA256
}
# Above this many bytes a "digest" is rejected as an invalid argument; shorter wrong
# lengths fail in the signing operation itself.
_MAX_DIGEST = 32


class RsaKey:
    """A loaded RSA key: the private key (or None) and the public key."""

    __slots__ = ("private", "public", "size")

    def __init__(self, private: rsa.RSAPrivateKey | None, public: rsa.RSAPublicKey) -> None:
        self.private = private
        self.public = public
        self.size = (public.key_size + 7) // 8

    def __repr__(self) -> str:  # never show key material
        kind = "private" if self.private is not None else "public"
        return f"<RsaKey {kind} {self.public.key_size} bits>"


def _crypto_failed(message: str) -> BaseException:
    return fail("AWS_ERROR_CAL_CRYPTO_OPERATION_FAILED", message)


def _private_from_pkcs1(data: bytes) -> RsaKey:
    """RSAPrivateKey (PKCS#1) DER."""
    try:
        top = der.read_single(data, der.TAG_SEQUENCE)
        items = der.children(data, top)
        # version, n, e, d, p, q, dp, dq, qinv: all INTEGERs.  (PKCS#8 has a SEQUENCE second.)
        if len(items) < 9 or any(t.tag != der.TAG_INTEGER for t in items[:9]):
            raise der.DerError("not an RSAPrivateKey")
        key = serialization.load_der_private_key(data, password=None)
    except (der.DerError, ValueError, TypeError):
        raise _crypto_failed("not a PKCS#1 RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - shape checked above
        raise _crypto_failed("not an RSA private key")
    return RsaKey(key, key.public_key())


def _public_from_pkcs1(data: bytes) -> RsaKey:
    """RSAPublicKey (PKCS#1) DER: SEQUENCE { n INTEGER, e INTEGER }."""
    try:
        top = der.read_single(data, der.TAG_SEQUENCE)
        items = der.children(data, top)
        if len(items) != 2 or any(t.tag != der.TAG_INTEGER for t in items):
            raise der.DerError("not an RSAPublicKey")
        n, e = (int.from_bytes(data[t.start:t.end], "big", signed=True) for t in items)
        if n <= 0 or e <= 0:
            raise der.DerError("negative modulus or exponent")
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except (der.DerError, ValueError, TypeError):
        raise _crypto_failed("not a PKCS#1 RSA public key") from None
    return RsaKey(None, key)


def _private_from_pkcs8(data: bytes) -> RsaKey:
    """PrivateKeyInfo (PKCS#8) DER holding an RSA key."""
    try:
        top = der.read_single(data, der.TAG_SEQUENCE)
        items = der.children(data, top)
        if len(items) < 3 or items[0].tag != der.TAG_INTEGER or items[1].tag != der.TAG_SEQUENCE \
                or items[2].tag != der.TAG_OCTET_STRING:
            raise der.DerError("not a PrivateKeyInfo")
        alg = der.children(data, items[1])
        if not alg or alg[0].tag != der.TAG_OID:
            raise der.DerError("no algorithm OID")
        oid = der.decode_oid(data[alg[0].start:alg[0].end])
    except der.DerError:
        raise fail("AWS_ERROR_CAL_MALFORMED_ASN1_ENCOUNTERED", "malformed PKCS#8 key") from None
    if oid != OID_RSA_ENCRYPTION:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "the PKCS#8 key is not an RSA key")
    return _private_from_pkcs1(data[items[2].start:items[2].end])


def private_from_pem(data: bytes) -> RsaKey:
    label, body = pem.parse(data)[0]
    if label == "RSA PRIVATE KEY":
        return _private_from_pkcs1(body)
    if label == "PRIVATE KEY":
        return _private_from_pkcs8(body)
    raise ValueError("no RSA private key in the PEM data")


def public_from_pem(data: bytes) -> RsaKey:
    label, body = pem.parse(data)[0]
    if label == "RSA PUBLIC KEY":
        return _public_from_pkcs1(body)
    raise ValueError("no RSA public key in the PEM data")


def private_from_der(data: bytes) -> RsaKey:
    return _private_from_pkcs1(data)


def public_from_der(data: bytes) -> RsaKey:
    return _public_from_pkcs1(data)


# ---------------------------------------------------------------- operations
def _encryption_padding(algorithm: int) -> tuple[padding.AsymmetricPadding, int]:
    """The padding and its overhead in bytes, by RSAEncryptionAlgorithm value."""
    if algorithm == 0:
        return padding.PKCS1v15(), 11
    h: hashes.HashAlgorithm = hashes.SHA256() if algorithm == 1 else hashes.SHA512()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None), 2 * h.digest_size + 2


def encrypt(key: RsaKey, algorithm: int, plaintext: bytes) -> bytes:
    pad, overhead = _encryption_padding(algorithm)
    if len(plaintext) > key.size - overhead:
        raise fail("AWS_ERROR_CAL_BUFFER_TOO_LARGE_FOR_ALGORITHM",
                   f"at most {max(key.size - overhead, 0)} bytes fit in one block with this key and padding")
    try:
        return key.public.encrypt(plaintext, pad)
    except ValueError as e:  # pragma: no cover - sizes checked above
        raise _crypto_failed(str(e)) from None


def decrypt(key: RsaKey, algorithm: int, ciphertext: bytes) -> bytes:
    if key.private is None:
        raise _crypto_failed("decryption needs a private key")
    if len(ciphertext) != key.size:
        raise fail("AWS_ERROR_INVALID_ARGUMENT", f"the ciphertext must be {key.size} bytes long")
    pad, _ = _encryption_padding(algorithm)
    try:
        return key.private.decrypt(ciphertext, pad)
    except ValueError:
        raise _crypto_failed("decryption failed") from None


def _signature_padding(algorithm: int, h: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if algorithm == 2:
        return padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def sign(key: RsaKey, algorithm: int, digest: bytes) -> bytes:
    if len(digest) > _MAX_DIGEST:
        raise fail("AWS_ERROR_INVALID_ARGUMENT", "the digest is too long")
    if key.private is None:
        raise _crypto_failed("signing needs a private key")
    h = _SIGN_HASHES[algorithm]
    if len(digest) != h.digest_size:
        raise _crypto_failed(f"a {h.name} digest is {h.digest_size} bytes long")
    try:
        return key.private.sign(digest, _signature_padding(algorithm, h), utils.Prehashed(h))
    except ValueError as e:  # e.g. a key too small for PSS
        raise _crypto_failed(str(e)) from None


def verify(key: RsaKey, algorithm: int, digest: bytes, signature: bytes) -> bool:
    h = _SIGN_HASHES[algorithm]
    if len(digest) != h.digest_size:
        return False
    try:
        key.public.verify(signature, digest, _signature_padding(algorithm, h), utils.Prehashed(h))
    except (InvalidSignature, ValueError):
        return False
    return True
