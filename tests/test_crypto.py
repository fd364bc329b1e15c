"""crtpy.crypto Hash, HMAC and ED25519: known answers (RFC 4231, RFC 8032), differential
tests against the reference awscrt and the standard library, streaming and misuse."""
from __future__ import annotations

import array
import base64
import hashlib
import hmac
import os
import random
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crtpy.crypto as ours
from crtpy._crypto import ed25519 as ed_impl
from crtpy.exceptions import AwsCrtError

ref = pytest.importorskip("awscrt.crypto")

LONG = os.environ.get("CRTPY_LONG_TESTS") == "1"
common = settings(max_examples=300 if LONG else 40, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
lengths = st.one_of(st.integers(0, 200), st.integers(0, 1 << 20))

HASHES = {
    "md5": (ours.Hash.md5_new, ref.Hash.md5_new, hashlib.md5),
    "sha1": (ours.Hash.sha1_new, ref.Hash.sha1_new, hashlib.sha1),
    "sha256": (ours.Hash.sha256_new, ref.Hash.sha256_new, hashlib.sha256),
}


def _data(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


# ---------------------------------------------------------------- Hash
@pytest.mark.parametrize("name, expected", [
    ("md5", "900150983cd24fb0d6963f7d28e17f72"),
    ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
])
def test_hash_known_answers(name: str, expected: str) -> None:
    # FIPS 180 / RFC 1321 test vectors for "abc".
    h = HASHES[name][0]()
    h.update(b"a")
    h.update("bc")
    assert h.digest().hex() == expected
    # No update at all: the digest of the empty message, as the reference gives.
    assert HASHES[name][0]().digest() == HASHES[name][1]().digest() == HASHES[name][2]().digest()


@common
@given(seed=st.integers(0, 2**32), length=lengths, data=st.data())
def test_hash_streaming_matches_reference(seed: int, length: int, data: st.DataObject) -> None:
    buf = _data(seed, length)
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=6), label="cuts"))
    truncate = data.draw(st.sampled_from([0, 0, 1, 10, 16, 20, 31, 32, 33, 100, -1]), label="truncate_to")
    for name, (mine_new, ref_new, std) in HASHES.items():
        mine, theirs = mine_new(), ref_new()
        last = 0
        for cut in cuts + [length]:
            mine.update(memoryview(buf)[last:cut])
            theirs.update(buf[last:cut])  # the reference takes bytes only
            last = cut
        expected = theirs.digest(truncate)
        assert mine.digest(truncate) == expected, name
        if truncate in (0, -1):
            assert expected == std(buf).digest()


@pytest.mark.parametrize("size", [1000, 200_000])  # 200 kB: MD5's bulk path
def test_hash_accepts_every_bytes_like(size: int) -> None:
    payload = _data(3, size)
    kinds = (payload, bytearray(payload), memoryview(payload), array.array("B", payload),
             array.array("I", payload), memoryview(payload).cast("B", (size // 8, 8)))
    for name, (mine_new, _, std) in HASHES.items():
        for kind in kinds:
            h = mine_new()
            h.update(kind)
            h.update(kind)
            h.update("\u00e9")
            assert h.digest() == std(payload + payload + "\u00e9".encode()).digest(), (name, type(kind))


def test_hash_digest_finishes_the_object() -> None:
    h = ours.Hash.sha256_new()
    h.update(b"x")
    h.digest()
    for action in (h.digest, lambda: h.update(b"y")):
        with pytest.raises(AwsCrtError) as info:
            action()
        assert info.value.name == "AWS_ERROR_INVALID_STATE"


def test_hash_bad_input() -> None:
    h = ours.Hash.md5_new()
    for bad in (None, 5, object()):
        with pytest.raises(TypeError):
            h.update(bad)
    h.update(b"still usable")
    with pytest.raises(TypeError):
        h.digest(1.5)


# ---------------------------------------------------------------- HMAC
# RFC 4231 section 4, HMAC-SHA-256 results.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 0),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 0),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 0),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 0),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b", 16),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 0),
    (b"\xaa" * 131, (b"This is a test using a larger than block-size key and a larger than block-size "
                     b"data. The key needs to be hashed before being used by the HMAC algorithm."),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 0),
]


@pytest.mark.parametrize("key, msg, expected, truncate", RFC4231)
def test_hmac_rfc4231(key: bytes, msg: bytes, expected: str, truncate: int) -> None:
    one = ours.HMAC.sha256_hmac_new(key)
    one.update(msg)
    assert one.digest(truncate).hex() == expected
    # Byte-at-a-time streaming gives the same MAC.
    many = ours.HMAC.sha256_hmac_new(bytearray(key))
    for i in range(len(msg)):
        many.update(msg[i:i + 1])
    assert many.digest(truncate).hex() == expected


@common
@given(key=st.binary(max_size=200), seed=st.integers(0, 2**32), length=lengths, data=st.data())
def test_hmac_streaming_matches_stdlib(key: bytes, seed: int, length: int, data: st.DataObject) -> None:
    # The reference's HMAC cannot run (its native update/digest functions are missing
    # in awscrt 0.38.0), so the standard library is the oracle here.
    buf = _data(seed, length)
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=6), label="cuts"))
    mac = ours.HMAC.sha256_hmac_new(key)
    last = 0
    for cut in cuts + [length]:
        mac.update(memoryview(buf)[last:cut])
        last = cut
    assert mac.digest() == hmac.new(key, buf, hashlib.sha256).digest()


def test_hmac_key_and_message_types() -> None:
    expected = hmac.new(b"key", b"message", hashlib.sha256).digest()
    for key in (b"key", "key", bytearray(b"key"), memoryview(b"key")):
        mac = ours.HMAC.sha256_hmac_new(key)
        mac.update("message")
        assert mac.digest() == expected
    for bad in (None, 5):
        with pytest.raises(TypeError):
            ours.HMAC.sha256_hmac_new(bad)
    mac = ours.HMAC.sha256_hmac_new(b"k")
    with pytest.raises(TypeError):
        mac.update(None)
    mac.digest()
    with pytest.raises(AwsCrtError) as info:
        mac.update(b"more")
    assert info.value.name == "AWS_ERROR_INVALID_STATE"


# ---------------------------------------------------------------- ED25519
# RFC 8032 section 7.1, tests 1-3: (secret key, public key).
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
]
F = ours.ED25519ExportFormat


def _ssh_fields(blob: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        out.append(blob[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def _openssh_pem(b64: bytes) -> bytes:
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + b"\n".join(lines) + b"\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize("secret, public", RFC8032)
def test_ed25519_rfc8032_keys(secret: str, public: str) -> None:
    key = ours.ED25519(ed_impl.from_seed(bytes.fromhex(secret)))
    assert key.export_private_key(F.RAW).hex() == secret
    assert key.export_public_key(F.RAW).hex() == public
    blob = base64.b64decode(key.export_public_key(F.OPENSSH_B64))
    assert _ssh_fields(blob) == [b"ssh-ed25519", bytes.fromhex(public)]
    loaded = serialization.load_ssh_private_key(_openssh_pem(key.export_private_key(F.OPENSSH_B64)), None)
    assert loaded.private_bytes_raw().hex() == secret  # type: ignore[union-attr]


def _private_layout(b64: bytes) -> tuple[list[bytes], int, list[int], list[int]]:
    """The container fields that do not depend on the key, and the field sizes."""
    raw = base64.b64decode(b64)
    magic = b"openssh-key-v1\0"
    assert raw.startswith(magic)
    pos = len(magic)
    head = []
    for _ in range(3):  # cipher, kdf, kdf options
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        head.append(raw[pos + 4:pos + 4 + n])
        pos += 4 + n
    (count,) = struct.unpack(">I", raw[pos:pos + 4])
    public_blob, private_section = _ssh_fields(raw[pos + 4:])
    inner = _ssh_fields(private_section[8:])  # after the two check ints
    return head, count, [len(public_blob), len(private_section)], [len(x) for x in inner]


def test_ed25519_exports_have_the_reference_layout() -> None:
    mine, theirs = ours.ED25519.new_generate(), ref.ED25519.new_generate()
    for fmt in F:
        assert len(mine.export_public_key(fmt)) == len(theirs.export_public_key(fmt))
        assert len(mine.export_private_key(fmt)) == len(theirs.export_private_key(fmt))
    assert _private_layout(mine.export_private_key(F.OPENSSH_B64)) == \
        _private_layout(theirs.export_private_key(F.OPENSSH_B64))
    # The reference's private export loads with an independent OpenSSH parser too, and its
    # raw public key matches: both runtimes speak the same format.
    loaded = serialization.load_ssh_private_key(_openssh_pem(theirs.export_private_key(F.OPENSSH_B64)), None)
    assert loaded.public_key().public_bytes_raw() == theirs.export_public_key(F.RAW)  # type: ignore[union-attr]
    pub_fields = _ssh_fields(base64.b64decode(theirs.export_public_key(F.OPENSSH_B64)))
    assert pub_fields == [b"ssh-ed25519", theirs.export_public_key(F.RAW)]


def test_ed25519_generates_distinct_keys_and_rejects_bad_formats() -> None:
    a, b = ours.ED25519.new_generate(), ours.ED25519.new_generate()
    assert a.export_private_key(F.RAW) != b.export_private_key(F.RAW)
    assert a.export_public_key(1) == a.export_public_key(F.OPENSSH_B64)  # plain ints work
    for bad in (5, -1):
        with pytest.raises(AwsCrtError) as info:
            a.export_public_key(bad)
        assert info.value.name == "AWS_ERROR_CAL_UNSUPPORTED_KEY_FORMAT"
    with pytest.raises(TypeError):
        a.export_private_key("RAW")
    assert "AAAA" not in repr(a)
