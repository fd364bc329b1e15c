"""Ed25519 keys and their raw and OpenSSH (RFC 8709) encodings."""
from __future__ import annotations

import base64
import os
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519

_KEY_TYPE = b"ssh-ed25519"
_MAGIC = b"openssh-key-v1\0"
_BLOCK = 8  # cipher "none" pads the private section to 8 bytes


def generate() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def from_seed(seed: bytes) -> ed25519.Ed25519PrivateKey:
    """A key from its 32-byte private seed (used by tests with RFC 8032 vectors)."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _public_blob(public: bytes) -> bytes:
    return _string(_KEY_TYPE) + _string(public)


def public_raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def public_openssh(key: ed25519.Ed25519PrivateKey) -> bytes:
    """Base64 of the SSH public key blob (no key-type prefix, no comment)."""
    return base64.b64encode(_public_blob(public_raw(key)))


def private_openssh(key: ed25519.Ed25519PrivateKey) -> bytes:
    """Base64 of an unencrypted ``openssh-key-v1`` container (no PEM armour)."""
    public = public_raw(key)
    check = os.urandom(4)
    section = (check + check + _string(_KEY_TYPE) + _string(public)
               + _string(private_raw(key) + public) + _string(b""))
    section += bytes(range(1, 1 + (-len(section)) % _BLOCK))
    blob = (_MAGIC + _string(b"none") + _string(b"none") + _string(b"")
            + struct.pack(">I", 1) + _string(_public_blob(public)) + _string(section))
    return base64.b64encode(blob)
