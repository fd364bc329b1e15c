"""A small throw-away PKI (CA, server and client certificates) made with ``cryptography``.

Used by ``crtpy demo`` and by the test suite (``tests/helpers/certs.py``).  Keys are
written with mode 0600 into the directory given by the caller; nothing here ever talks
to the network.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from typing_extensions import Self

__all__ = ["PemFile", "Pki", "make_pki"]


class PemFile(str):
    """A path (the ``str`` value itself) that also carries the file's bytes in ``pem``.

    It can be passed wherever a path is expected (``open()``, ``TlsContextOptions
    .create_client_with_mtls_from_path``) while ``.pem`` gives the content for the
    in-memory constructors.
    """

    pem: bytes

    def __new__(cls, path: str, pem: bytes) -> Self:
        obj = super().__new__(cls, path)
        obj.pem = pem
        return obj

    @property
    def path(self) -> str:
        return str(self)

    @property
    def data(self) -> bytes:
        return self.pem


@dataclass(frozen=True)
class Pki:
    """Paths (each also carrying ``.pem`` bytes) of a generated PKI."""

    directory: str
    ca_cert: PemFile
    ca_key: PemFile
    server_cert: PemFile
    server_key: PemFile
    client_cert: PemFile
    client_key: PemFile
    client_p12: PemFile           # DER PKCS#12 (cert + key + CA chain); ``.pem`` holds its bytes
    client_p12_password: str
    other_ca_cert: PemFile        # a CA that signed nothing here
    other_ca_key: PemFile

    # flat aliases for callers that prefer separate path / bytes attributes
    @property
    def ca_cert_path(self) -> str: return str(self.ca_cert)
    @property
    def ca_cert_pem(self) -> bytes: return self.ca_cert.pem
    @property
    def server_cert_path(self) -> str: return str(self.server_cert)
    @property
    def server_cert_pem(self) -> bytes: return self.server_cert.pem
    @property
    def server_key_path(self) -> str: return str(self.server_key)
    @property
    def server_key_pem(self) -> bytes: return self.server_key.pem
    @property
    def client_cert_path(self) -> str: return str(self.client_cert)
    @property
    def client_cert_pem(self) -> bytes: return self.client_cert.pem
    @property
    def client_key_path(self) -> str: return str(self.client_key)
    @property
    def client_key_pem(self) -> bytes: return self.client_key.pem
    @property
    def client_p12_path(self) -> str: return str(self.client_p12)
    @property
    def client_p12_bytes(self) -> bytes: return self.client_p12.pem
    @property
    def other_ca_cert_path(self) -> str: return str(self.other_ca_cert)
    @property
    def other_ca_cert_pem(self) -> bytes: return self.other_ca_cert.pem

    def __repr__(self) -> str:  # never show key material
        return f"Pki(directory={self.directory!r})"


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "crtpy test PKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(common_name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
               server: bool, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
               ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(directory: str, name: str, data: bytes, private: bool = False) -> PemFile:
    path = os.path.join(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return PemFile(path, data)


def make_pki(directory: str, *, password: str = "crtpy-p12-password",
             server_dns: tuple[str, ...] = ("localhost",),
             server_ips: tuple[str, ...] = ("127.0.0.1", "::1"),
             client_name: str | None = None) -> Pki:
    """Generate a CA, a server certificate (SAN: localhost, 127.0.0.1, ::1), a client
    certificate (also as PKCS#12 protected by ``password``) and an unrelated CA, and write
    them as files in ``directory`` (keys with mode 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    os.makedirs(directory, exist_ok=True)
    ca_cert, ca_key = _make_ca("crtpy test CA")
    srv_cert, srv_key = _make_leaf("localhost", ca_cert, ca_key, server=True, dns=server_dns, ips=server_ips)
    cli_cert, cli_key = _make_leaf(client_name or "crtpy test client", ca_cert, ca_key, server=False)
    other_cert, other_key = _make_ca("crtpy unrelated CA")

    def cert_pem(c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    p12 = pkcs12.serialize_key_and_certificates(
        b"crtpy-client", cli_key, cli_cert, [ca_cert],
        serialization.BestAvailableEncryption(password.encode()))

    return Pki(
        directory=directory,
        ca_cert=_write(directory, "ca.pem", cert_pem(ca_cert)),
        ca_key=_write(directory, "ca.key", key_pem(ca_key), private=True),
        server_cert=_write(directory, "server.pem", cert_pem(srv_cert)),
        server_key=_write(directory, "server.key", key_pem(srv_key), private=True),
        client_cert=_write(directory, "client.pem", cert_pem(cli_cert)),
        client_key=_write(directory, "client.key", key_pem(cli_key), private=True),
        client_p12=_write(directory, "client.p12", p12, private=True),
        client_p12_password=password,
        other_ca_cert=_write(directory, "other-ca.pem", cert_pem(other_cert)),
        other_ca_key=_write(directory, "other-ca.key", key_pem(other_key), private=True),
    )
