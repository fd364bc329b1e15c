"""ECDSA keys on P-256 and P-384, and DER signature (de)coding."""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from . import der, fail

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
# By ECType value: (curve, coordinate size, curve OID, prehash used to feed the digest).
_CURVES: dict[int, tuple[ec.EllipticCurve, int, str, hashes.HashAlgorithm]] = {
    0: (ec.SECP256R1(), 32, "1.2.840.10045.3.1.7", hashes.SHA256()),
    1: (ec.SECP384R1(), 48, "1.3.132.0.34", hashes.SHA384()),
}
_TYPE_BY_OID = {v[2]: k for k, v in _CURVES.items()}
_TYPE_BY_NAME = {v[0].name: k for k, v in _CURVES.items()}
# The longest coordinate a padded signature may ask for.
MAX_PAD = 256


class EcKey:
    __slots__ = ("coord_size", "curve_type", "private", "public")

    def __init__(self, private: ec.EllipticCurvePrivateKey | None,
                 public: ec.EllipticCurvePublicKey, curve_type: int) -> None:
        self.private = private
        self.public = public
        self.curve_type = curve_type
        self.coord_size = _CURVES[curve_type][1]

    def __repr__(self) -> str:  # never show key material
        kind = "private" if self.private is not None else "public"
        return f"<EcKey {kind} {self.public.curve.name}>"


def generate(curve_type: int) -> EcKey:
    key = ec.generate_private_key(_CURVES[curve_type][0])
    return EcKey(key, key.public_key(), curve_type)


def _curve_oid(data: bytes, tlv: der.Tlv) -> str:
    if tlv.tag != der.TAG_OID:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "explicit curve parameters are not supported")
    return der.decode_oid(data[tlv.start:tlv.end])


def _check_algorithm(data: bytes, alg: der.Tlv) -> int:
    """AlgorithmIdentifier of an EC key: return the curve type."""
    parts = der.children(data, alg)
    if len(parts) < 2 or parts[0].tag != der.TAG_OID:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "not an EC key")
    if der.decode_oid(data[parts[0].start:parts[0].end]) != OID_EC_PUBLIC_KEY:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "not an EC key")
    return _supported(_curve_oid(data, parts[1]))


def _supported(oid: str) -> int:
    curve_type = _TYPE_BY_OID.get(oid)
    if curve_type is None:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", f"curve {oid} is not supported")
    return curve_type


def load_der(data: bytes) -> EcKey:
    """An EC key in SEC1 (ECPrivateKey), PKCS#8 or SubjectPublicKeyInfo DER."""
    if not data:
        raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "empty key")
    try:
        top = der.read_single(data, der.TAG_SEQUENCE)
        items = der.children(data, top)
        if len(items) >= 2 and items[0].tag == der.TAG_SEQUENCE and items[1].tag == der.TAG_BIT_STRING:
            _check_algorithm(data, items[0])  # SubjectPublicKeyInfo
            private = False
        elif len(items) >= 3 and items[0].tag == der.TAG_INTEGER and items[1].tag == der.TAG_SEQUENCE \
                and items[2].tag == der.TAG_OCTET_STRING:
            _check_algorithm(data, items[0 + 1])  # PKCS#8
            private = True
        elif len(items) >= 2 and items[0].tag == der.TAG_INTEGER and items[1].tag == der.TAG_OCTET_STRING:
            # SEC1: the curve is in the [0] parameters field.
            params = [t for t in items[2:] if t.tag == 0xA0]
            if not params:
                raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "SEC1 key without curve parameters")
            inner = der.children(data, params[0])
            if len(inner) != 1:
                raise der.DerError("bad SEC1 parameters")
            _supported(_curve_oid(data, inner[0]))
            private = True
        else:
            raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "not an EC key format")
    except der.DerError:
        raise fail("AWS_ERROR_CAL_MALFORMED_ASN1_ENCOUNTERED", "malformed EC key") from None
    try:
        if private:
            key = serialization.load_der_private_key(data, password=None)
        else:
            key = serialization.load_der_public_key(data)  # type: ignore[assignment]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise fail("AWS_ERROR_CAL_MALFORMED_ASN1_ENCOUNTERED", "malformed EC key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return EcKey(key, key.public_key(), _TYPE_BY_NAME[key.curve.name])
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EcKey(None, key, _TYPE_BY_NAME[key.curve.name])
    raise fail("AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT", "not an EC key")  # pragma: no cover


def export(key: EcKey, fmt: int) -> bytes:
    enc = serialization.Encoding.DER
    if fmt == 2:  # SPKI
        return key.public.public_bytes(enc, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.private is None:
        raise fail("AWS_ERROR_CAL_MISSING_REQUIRED_KEY_COMPONENT", "exporting a private format needs a private key")
    form = serialization.PrivateFormat.TraditionalOpenSSL if fmt == 0 else serialization.PrivateFormat.PKCS8
    return key.private.private_bytes(enc, form, serialization.NoEncryption())


def public_coords(key: EcKey) -> tuple[bytes, bytes]:
    numbers = key.public.public_numbers()
    n = key.coord_size
    return numbers.x.to_bytes(n, "big"), numbers.y.to_bytes(n, "big")


def _prehash(key: EcKey, digest: bytes) -> tuple[bytes, hashes.HashAlgorithm]:
    """Fit a digest of any length to the curve, as ECDSA does: keep the leftmost bytes of
    a longer one, left-pad a shorter one with zeros (the same integer)."""
    h = _CURVES[key.curve_type][3]
    n = key.coord_size
    if len(digest) > n:
        digest = digest[:n]
    elif len(digest) < n:
        digest = bytes(n - len(digest)) + digest
    return digest, h


def sign(key: EcKey, digest: bytes) -> bytes:
    if key.private is None:
        raise fail("AWS_ERROR_INVALID_ARGUMENT", "signing needs a private key")
    value, h = _prehash(key, digest)
    return key.private.sign(value, ec.ECDSA(utils.Prehashed(h)))


def verify(key: EcKey, digest: bytes, signature: bytes) -> bool:
    value, h = _prehash(key, digest)
    try:
        key.public.verify(signature, value, ec.ECDSA(utils.Prehashed(h)))
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- signatures
def _malformed() -> BaseException:
    return fail("AWS_ERROR_CAL_MALFORMED_ASN1_ENCOUNTERED", "malformed DER ECDSA signature")


def _unsigned(data: bytes, tlv: der.Tlv) -> bytes:
    value = data[tlv.start:tlv.end]
    if not value or value[0] & 0x80:  # empty or negative
        raise _malformed()
    if len(value) > 1 and value[0] == 0:  # drop the sign byte
        value = value[1:]
    return value


def decode_signature(data: bytes) -> tuple[bytes, bytes]:
    """DER ``SEQUENCE { r INTEGER, s INTEGER }`` to the big-endian bytes of r and s."""
    try:
        top = der.read_single(data, der.TAG_SEQUENCE)
        first = der.read_tlv(data, top.start, top.end)
        second = der.read_tlv(data, first.end, top.end)
        # Elements after s are read (they must be well-formed) and ignored.
        pos = second.end
        while pos < top.end:
            pos = der.read_tlv(data, pos, top.end).end
    except der.DerError:
        raise _malformed() from None
    if first.tag != der.TAG_INTEGER or second.tag != der.TAG_INTEGER:
        raise _malformed()
    return _unsigned(data, first), _unsigned(data, second)


def padded_pair(data: bytes, pad_to: int) -> bytes:
    if not 0 <= pad_to <= MAX_PAD:
        raise fail("AWS_ERROR_INVALID_ARGUMENT", f"pad_to must be between 1 and {MAX_PAD}")
    r, s = decode_signature(data)
    if len(r) > pad_to or len(s) > pad_to:  # r and s are never empty, so 0 fails here
        raise fail("AWS_ERROR_INVALID_ARGUMENT", "r or s is longer than pad_to")
    return r.rjust(pad_to, b"\0") + s.rjust(pad_to, b"\0")


def _integer(value: bytes) -> bytes:
    value = value.lstrip(b"\0")
    if value and value[0] & 0x80:
        value = b"\0" + value
    # Zero encodes as an empty INTEGER, as the reference runtime does.
    return der.encode_tlv(der.TAG_INTEGER, value)


def encode_signature(r: bytes, s: bytes) -> bytes:
    return der.encode_tlv(der.TAG_SEQUENCE, _integer(r) + _integer(s))
