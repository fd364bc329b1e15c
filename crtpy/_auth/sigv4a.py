"""SigV4a: ECDSA P-256 keys derived from AWS credentials, and signatures with them.

The private key comes from the secret access key through the NIST SP 800-108 counter-mode
KDF with HMAC-SHA256, as the SigV4a specification describes: the fixed input is the
algorithm label, a zero byte, the access key id and a one-byte counter, followed by the
output length in bits; the counter is increased while the candidate is not below n - 1.
Keys are cached per (access key id, secret).
"""
from __future__ import annotations

import hashlib
import hmac
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .._errors import error

_LABEL = b"AWS4-ECDSA-P256-SHA256"
# Order of the P-256 group.
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_N_MINUS_2 = _N - 2
_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))

_cache: dict[tuple[str, str], ec.EllipticCurvePrivateKey] = {}
_CACHE_MAX = 64
_lock = threading.Lock()


def derive_private_value(access_key_id: str, secret_access_key: str) -> int:
    """The private scalar for a pair of credentials."""
    key = b"AWS4A" + secret_access_key.encode()
    akid = access_key_id.encode()
    for counter in range(1, 255):
        fixed = _LABEL + b"\x00" + akid + bytes((counter,)) + b"\x00\x00\x01\x00"
        k0 = hmac.digest(key, b"\x00\x00\x00\x01" + fixed, "sha256")
        c = int.from_bytes(k0, "big")
        if c <= _N_MINUS_2:
            return c + 1
    raise error("AWS_AUTH_SIGNING_UNSUPPORTED_ALGORITHM", "SigV4a key derivation did not converge.")


def private_key(access_key_id: str, secret_access_key: str) -> ec.EllipticCurvePrivateKey:
    """The (cached) ECDSA P-256 private key for a pair of credentials."""
    cache_key = (access_key_id, secret_access_key)
    key = _cache.get(cache_key)
    if key is not None:
        return key
    key = ec.derive_private_key(derive_private_value(access_key_id, secret_access_key), ec.SECP256R1())
    with _lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[cache_key] = key
    return key


def sign_digest(access_key_id: str, secret_access_key: str, digest: bytes) -> bytes:
    """DER signature of a SHA-256 digest."""
    return private_key(access_key_id, secret_access_key).sign(digest, _PREHASHED)


def sign_hex(access_key_id: str, secret_access_key: str, message: bytes) -> str:
    """Hex DER signature over SHA-256(message)."""
    key = _cache.get((access_key_id, secret_access_key))
    if key is None:
        key = private_key(access_key_id, secret_access_key)
    return key.sign(hashlib.sha256(message).digest(), _PREHASHED).hex()


def public_key_xy(access_key_id: str, secret_access_key: str) -> tuple[int, int]:
    nums = private_key(access_key_id, secret_access_key).public_key().public_numbers()
    return nums.x, nums.y


def verify_hex(public_x: int, public_y: int, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is a valid signature over SHA-256(message)."""
    pub = ec.EllipticCurvePublicNumbers(public_x, public_y, ec.SECP256R1()).public_key()
    try:
        pub.verify(bytes.fromhex(signature_hex), hashlib.sha256(message).digest(), _PREHASHED)
    except (InvalidSignature, ValueError):
        return False
    return True
