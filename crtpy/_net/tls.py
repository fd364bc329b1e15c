"""Building ``ssl.SSLContext`` objects from ``crtpy.io.TlsContextOptions``.

Private keys never touch a world-readable file: ``ssl`` can only load a certificate
chain from a path, so in-memory keys are handed to it through an anonymous memory file
(``memfd_create``, Linux) or, elsewhere, a mode-0600 temporary file that is deleted as
soon as OpenSSL has read it.
"""
from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .._errors import error

if TYPE_CHECKING:
    from ..io import TlsContextOptions

_TLS_VERSIONS = {
    0: ssl.TLSVersion.SSLv3,
    1: ssl.TLSVersion.TLSv1,
    2: ssl.TLSVersion.TLSv1_1,
    3: ssl.TLSVersion.TLSv1_2,
    4: ssl.TLSVersion.TLSv1_3,
}

# TlsCipherPref values
CIPHER_DEFAULT = 0
CIPHER_PQ_TLSv1_0_2021_05 = 6
CIPHER_PQ_DEFAULT = 8
CIPHER_TLSv1_2_2025_07 = 9

_TLS12_2025_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def cipher_pref_supported(pref: int) -> bool:
    """Whether Python's ``ssl`` can honour a ``TlsCipherPref``.  The post-quantum
    preferences need key-exchange group selection, which ``ssl`` does not expose."""
    return pref in (CIPHER_DEFAULT, CIPHER_TLSv1_2_2025_07)


@contextlib.contextmanager
def private_file(data: bytes) -> Iterator[str]:
    """A path whose content is ``data``, readable only by this process, gone on exit."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("crtpy-key", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data) if len(data) < (1 << 20) else _write_all(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    import tempfile  # rarely needed; importing it costs ~1 MiB of resident memory

    fd, path = tempfile.mkstemp(prefix="crtpy-", suffix=".pem")  # mkstemp creates with 0600
    try:
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    blob = bytes(cert_pem).rstrip(b"\n") + b"\n" + bytes(key_pem)
    with private_file(blob) as path:
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise error("AWS_IO_FILE_VALIDATION_FAILURE",
                        f"the certificate or private key could not be loaded: {exc.reason or exc}") from None


def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise error("AWS_ERROR_FILE_INVALID_PATH", f"{what} file not found: {path}") from None
    except PermissionError:
        raise error("AWS_ERROR_NO_PERMISSION", f"no permission to read {what} file: {path}") from None
    except OSError as exc:
        raise error("AWS_ERROR_FILE_OPEN_FAILURE", f"cannot read {what} file {path}: {exc.strerror}") from None


def pkcs12_to_pem(data: bytes, password: str | None) -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) from PKCS#12 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pw = password.encode() if isinstance(password, str) else password
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, pw or None)
    except (ValueError, TypeError) as exc:
        raise error("AWS_IO_FILE_VALIDATION_FAILURE",
                    f"the PKCS#12 file could not be decoded (wrong password?): {exc}") from None
    if key is None or cert is None:
        raise error("AWS_IO_FILE_VALIDATION_FAILURE", "the PKCS#12 file holds no certificate and private key")
    chain = cert.public_bytes(serialization.Encoding.PEM)
    for c in extra or ():
        chain += c.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return chain, key_pem


def build_context(opts: TlsContextOptions, *, server: bool, alpn: Sequence[str] | None) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` configured from a ``crtpy.io.TlsContextOptions``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    verify = bool(opts.verify_peer)

    min_ver = int(opts.min_tls_ver)
    cipher_pref = int(opts.cipher_pref)
    if not cipher_pref_supported(cipher_pref):
        raise error("AWS_IO_TLS_CIPHER_PREF_UNSUPPORTED",
                    f"TLS cipher preference {cipher_pref} is not supported by crtpy's TLS implementation")
    if cipher_pref == CIPHER_TLSv1_2_2025_07:
        ctx.set_ciphers(_TLS12_2025_CIPHERS)
        min_ver = max(min_ver if min_ver in _TLS_VERSIONS else 3, 3)
    if min_ver in _TLS_VERSIONS:
        try:
            ctx.minimum_version = _TLS_VERSIONS[min_ver]
        except (ValueError, ssl.SSLError):
            raise error("AWS_IO_TLS_VERSION_UNSUPPORTED", f"TLS version {min_ver} is not supported") from None
        if min_ver < 3:
            # old protocol versions need a lower OpenSSL security level
            with contextlib.suppress(ssl.SSLError):
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    # trust store
    if server:
        ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    else:
        ctx.check_hostname = verify
        ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    ca_buffer = opts.ca_buffer
    ca_dirpath = opts.ca_dirpath
    if ca_buffer or ca_dirpath:
        try:
            if ca_buffer:
                text = bytes(ca_buffer).decode("ascii", "replace") if not isinstance(ca_buffer, str) else ca_buffer
                ctx.load_verify_locations(cadata=text)
            if ca_dirpath:
                ctx.load_verify_locations(capath=ca_dirpath)
        except ssl.SSLError as exc:
            raise error("AWS_IO_FILE_VALIDATION_FAILURE",
                        f"the CA certificates could not be loaded: {exc.reason or exc}") from None
    elif verify:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH if not server else ssl.Purpose.CLIENT_AUTH)

    # own certificate
    cert = opts.certificate_buffer
    key = opts.private_key_buffer
    p12_path = opts.pkcs12_filepath
    if p12_path:
        cert, key = pkcs12_to_pem(read_file(p12_path, "PKCS#12"), opts.pkcs12_password)
    if cert is not None or key is not None:
        if not cert or not key:
            raise error("AWS_ERROR_INVALID_ARGUMENT", "both a certificate and a private key are required")
        _load_chain(ctx, _as_bytes(cert), _as_bytes(key))
    elif server:
        raise error("AWS_ERROR_INVALID_ARGUMENT", "a TLS server needs a certificate and a private key")

    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _as_bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
