# ruff: noqa: F811  (pytest fixtures are imported by name)
"""TLS client connections through crtpy._net.open_connection to a local TLS server."""
from __future__ import annotations

import os
import ssl
import stat

import pytest
from helpers.certs import ipv6_loopback_available, pki, tls_exchange, tls_server  # noqa: F401

from crtpy import io
from crtpy._net import tls as _tls
from crtpy.exceptions import AwsCrtError


def new_bootstrap():
    """A private one-thread event-loop group and its bootstrap.  Tests make it in their body
    (not in a fixture, which pytest would keep alive past the leak check)."""
    elg = io.EventLoopGroup(1)
    return io.ClientBootstrap(elg, io.DefaultHostResolver(elg))


def client_options(pki, *, ca=None, alpn=None, opts=None):
    opts = opts or io.TlsContextOptions()
    if ca is not False:
        opts.override_default_trust_store(ca if ca is not None else pki.ca_cert.pem)
    if alpn is not None:
        opts.alpn_list = alpn
    return io.ClientTlsContext(opts).new_connection_options()


def test_verified_connection_with_alpn(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server(alpn=["h2", "http/1.1"])
    alpn, data = tls_exchange("localhost", server.port, client_options(pki, alpn=["h2"]), bootstrap)
    assert data == b"ping"
    assert alpn == "h2"
    info = server.wait_for_connections(1)[0]
    assert info["sni"] == "localhost"
    assert info["version"] in ("TLSv1.2", "TLSv1.3")


def test_alpn_list_per_connection_and_fallback(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server(alpn=["http/1.1"])
    conn = client_options(pki, alpn=["h2"])
    conn.set_alpn_list(["h2", "http/1.1"])
    assert tls_exchange("127.0.0.1", server.port, conn, bootstrap)[0] == "http/1.1"
    # no ALPN offered: none negotiated
    assert tls_exchange("127.0.0.1", server.port, client_options(pki), bootstrap)[0] is None
    assert io.is_alpn_available() is True


def test_verifies_by_default(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    """Without the test CA in the trust store the system store is used: the generated CA
    is unknown there, so the handshake must fail."""
    server = tls_server()
    with pytest.raises(AwsCrtError) as e:
        tls_exchange("localhost", server.port, client_options(pki, ca=False), bootstrap)
    assert e.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"


# The reference (awscrt 0.38.0 with s2n) reports AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE for
# both failures below; it is not used as a live oracle here because s2n delays failed
# handshakes by 10-30 s on purpose.
def test_wrong_ca_fails(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    with pytest.raises(AwsCrtError) as e:
        tls_exchange("localhost", server.port, client_options(pki, ca=pki.other_ca_cert.pem), bootstrap)
    assert e.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
    assert "certificate" in e.value.message


def test_wrong_host_name_fails(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    conn = client_options(pki)
    conn.set_server_name("not-this-host.example")
    with pytest.raises(AwsCrtError) as e:
        tls_exchange("127.0.0.1", server.port, conn, bootstrap)
    assert e.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
    assert server.wait_for_connections(0) == []  # handshake never completed


def test_verify_peer_false_accepts_unknown_ca(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    opts = io.TlsContextOptions()
    opts.verify_peer = False
    conn = io.ClientTlsContext(opts).new_connection_options()
    conn.set_server_name("whatever.example")
    assert tls_exchange("127.0.0.1", server.port, conn, bootstrap)[1] == b"ping"


def test_ip_address_server_name_verified(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    assert tls_exchange("127.0.0.1", server.port, client_options(pki), bootstrap)[1] == b"ping"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
def test_ipv6_loopback(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server(host="::1")
    assert tls_exchange("::1", server.port, client_options(pki), bootstrap)[1] == b"ping"


def test_override_trust_store_from_path(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    opts = io.TlsContextOptions()
    opts.override_default_trust_store_from_path(ca_filepath=pki.ca_cert)
    assert opts.ca_buffer == pki.ca_cert.pem
    conn = io.ClientTlsContext(opts).new_connection_options()
    assert tls_exchange("localhost", server.port, conn, bootstrap)[1] == b"ping"


def _mtls_options(kind, pki):
    if kind == "path":
        return io.TlsContextOptions.create_client_with_mtls_from_path(pki.client_cert, pki.client_key)
    if kind == "memory":
        return io.TlsContextOptions.create_client_with_mtls(pki.client_cert.pem, pki.client_key.pem)
    return io.TlsContextOptions.create_client_with_mtls_pkcs12(pki.client_p12, pki.client_p12_password)


@pytest.mark.parametrize("kind", ["path", "memory", "pkcs12"])
def test_mtls(leak_check, kind, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server(require_client_cert=True)
    conn = client_options(pki, opts=_mtls_options(kind, pki))
    assert tls_exchange("localhost", server.port, conn, bootstrap, payload=b"x" * 100_000)[1] == b"x" * 100_000
    info = server.wait_for_connections(1)[0]
    assert info["peer_subject"]["commonName"] == "crtpy test client"


def test_mtls_server_rejects_client_without_certificate(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server(require_client_cert=True)
    with pytest.raises(AwsCrtError) as e:
        tls_exchange("localhost", server.port, client_options(pki), bootstrap)
    # TLS 1.3 reports the server's rejection after the client's handshake finished: either
    # the handshake fails or the connection is closed by the peer's alert.
    assert e.value.name in ("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE", "AWS_IO_SOCKET_CLOSED")


def test_pkcs12_wrong_password(pki):
    opts = io.TlsContextOptions.create_client_with_mtls_pkcs12(pki.client_p12, "wrong")
    with pytest.raises(AwsCrtError) as e:
        io.ClientTlsContext(opts)
    assert e.value.name == "AWS_IO_FILE_VALIDATION_FAILURE"
    assert "wrong" not in repr(opts)


def test_bad_inputs(pki, tmp_path):
    with pytest.raises(FileNotFoundError):
        io.TlsContextOptions.create_client_with_mtls_from_path(str(tmp_path / "nope.pem"), pki.client_key)
    with pytest.raises(AwsCrtError) as e:
        io.ClientTlsContext(io.TlsContextOptions.create_client_with_mtls(b"garbage", b"garbage"))
    assert e.value.name == "AWS_IO_FILE_VALIDATION_FAILURE"
    opts = io.TlsContextOptions()
    opts.override_default_trust_store(b"not a certificate")
    with pytest.raises(AwsCrtError):
        io.ClientTlsContext(opts)
    with pytest.raises(TypeError):
        io.ClientTlsContext("options")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        io.TlsContextOptions.create_client_with_mtls(123, b"k")  # type: ignore[arg-type]
    opts = io.TlsContextOptions()
    opts.alpn_list = "h2"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        io.ClientTlsContext(opts)


def test_unavailable_features_raise_clearly():
    for call in (lambda: io.Pkcs11Lib(file="/usr/lib/softhsm/libsofthsm2.so"),
                 lambda: io.TlsContextOptions.create_client_with_mtls_windows_cert_store_path("CurrentUser\\MY\\x"),
                 lambda: io.TlsContextOptions.create_client_with_mtls_pkcs11(pkcs11_lib=None, user_pin="1")):
        with pytest.raises(AwsCrtError) as e:
            call()
        assert e.value.name == "AWS_ERROR_PLATFORM_NOT_SUPPORTED"


def test_min_tls_version_enforced(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    server.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    opts = io.TlsContextOptions()
    opts.min_tls_ver = io.TlsVersion.TLSv1_3
    with pytest.raises(AwsCrtError) as e:
        tls_exchange("localhost", server.port, client_options(pki, opts=opts), bootstrap)
    assert e.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
    opts = io.TlsContextOptions()
    opts.min_tls_ver = io.TlsVersion.TLSv1_2
    assert tls_exchange("localhost", server.port, client_options(pki, opts=opts), bootstrap)[1] == b"ping"
    assert server.wait_for_connections(1)[0]["version"] == "TLSv1.2"


def test_cipher_preferences(leak_check, pki, tls_server):
    bootstrap = new_bootstrap()
    server = tls_server()
    opts = io.TlsContextOptions()
    opts.cipher_pref = io.TlsCipherPref.TLSv1_2_2025_07
    assert io.TlsCipherPref.TLSv1_2_2025_07.is_supported()
    assert tls_exchange("localhost", server.port, client_options(pki, opts=opts), bootstrap)[1] == b"ping"
    assert not io.TlsCipherPref.PQ_DEFAULT.is_supported()
    opts = io.TlsContextOptions()
    opts.cipher_pref = io.TlsCipherPref.PQ_DEFAULT
    with pytest.raises(AwsCrtError) as e:
        io.ClientTlsContext(opts)
    assert e.value.name == "AWS_IO_TLS_CIPHER_PREF_UNSUPPORTED"


@pytest.mark.parametrize("kind", ["memory", "path", "pkcs12"])
def test_server_options_serve_python_client(kind, pki):
    """Server-side contexts from TlsContextOptions work with a plain Python ssl client."""
    import socket
    import threading

    if kind == "memory":
        opts = io.TlsContextOptions.create_server(pki.server_cert.pem, pki.server_key.pem)
    elif kind == "path":
        opts = io.TlsContextOptions.create_server_from_path(pki.server_cert, pki.server_key)
    else:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        key = serialization.load_pem_private_key(pki.server_key.pem, None)
        cert = x509.load_pem_x509_certificate(pki.server_cert.pem)
        path = os.path.join(pki.directory, "server.p12")
        with open(path, "wb") as f:
            f.write(pkcs12.serialize_key_and_certificates(b"s", key, cert, None,
                                                          serialization.BestAvailableEncryption(b"pw")))
        opts = io.TlsContextOptions.create_server_pkcs12(path, "pw")
    assert opts.verify_peer is False
    opts.alpn_list = ["h2"]
    ctx = io.ClientTlsContext(opts).new_connection_options()._ssl_context()
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        result = {}

        def serve():
            conn, _ = ls.accept()
            with ctx.wrap_socket(conn, server_side=True) as s:
                result["alpn"] = s.selected_alpn_protocol()
                s.sendall(s.recv(10))

        t = threading.Thread(target=serve)
        t.start()
        client = ssl.create_default_context(cafile=pki.ca_cert)
        client.set_alpn_protocols(["h2"])
        with socket.create_connection(ls.getsockname(), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"hi")
                assert s.recv(10) == b"hi"
        t.join(10)
    assert result["alpn"] == "h2"


def test_private_keys_never_in_world_readable_files(pki):
    with _tls.private_file(b"secret") as path:
        st = os.stat(path)
        assert not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        with open(path, "rb") as f:
            assert f.read() == b"secret"
    assert not os.path.exists(path) or path.startswith("/proc/self/fd/")


def test_reprs_hide_secrets(pki):
    opts = io.TlsContextOptions.create_client_with_mtls(pki.client_cert.pem, pki.client_key.pem)
    ctx = io.ClientTlsContext(opts)
    for text in (repr(opts), repr(ctx), repr(ctx.new_connection_options())):
        assert "PRIVATE KEY" not in text and "BEGIN" not in text


def test_options_defaults_match_reference():
    awscrt_io = pytest.importorskip("awscrt.io")
    mine, ref = io.TlsContextOptions(), awscrt_io.TlsContextOptions()
    for name in ("min_tls_ver", "ca_dirpath", "ca_buffer", "cipher_pref", "alpn_list", "certificate_buffer",
                 "private_key_buffer", "pkcs12_filepath", "pkcs12_password", "verify_peer",
                 "no_certificate_revocation"):
        assert getattr(mine, name) == getattr(ref, name), name
    mine_s, ref_s = io.SocketOptions(), awscrt_io.SocketOptions()
    for name in ("domain", "type", "connect_timeout_ms", "keep_alive", "keep_alive_timeout_secs",
                 "keep_alive_interval_secs", "keep_alive_max_probes"):
        assert getattr(mine_s, name) == getattr(ref_s, name), name
