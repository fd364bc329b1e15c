"""``crtpy http`` against local servers: http.server (HTTP/1.1), the h2 test server over
TLS (ALPN h2) and cleartext (prior knowledge), SigV4 signing from environment credentials."""
from __future__ import annotations

import http.server
import os
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import free_port, leak_check  # noqa: F401 - fixture
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.cli import one_line_error, run
from helpers.http_servers import H2Server, h1_server  # noqa: F401 - fixture

from crtpy._cli import main


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def h2_tls(pki: Any) -> Iterator[H2Server]:  # noqa: F811
    srv = H2Server(certfile=pki.server_cert, keyfile=pki.server_key, alpn=("h2", "http/1.1"))
    yield srv
    srv.stop()


@pytest.fixture
def h1_tls(pki: Any) -> Iterator[int]:  # noqa: F811
    """An HTTPS/1.1 server (http.server behind TLS, ALPN http/1.1 only)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = b"hello over tls\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.set_alpn_protocols(["http/1.1"])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    t.join(5)


# every connection a command made is closed and released when it returns
pytestmark = pytest.mark.usefixtures("no_proxy_env", "leak_check")


def test_get_body_to_stdout(capsys: pytest.CaptureFixture[str], h1_server: Any) -> None:  # noqa: F811
    rc, out, err = run(capsys, "http", f"http://127.0.0.1:{h1_server.port}/size/1000")
    assert rc == 0, err
    assert out == "a" * 1000
    assert err == ""


def test_put_file_with_headers_and_include(capsys: pytest.CaptureFixture[str], tmp_path,
                                           h1_server: Any) -> None:  # noqa: F811
    payload = bytes(range(256)) * 400
    src = tmp_path / "body.bin"
    src.write_bytes(payload)
    out_file = tmp_path / "out.bin"
    rc, out, err = run(capsys, "http", "-X", "put", "-d", f"@{src}", "-H", "X-Test: one", "-H", "X-Other:two",
                       "-o", str(out_file), f"http://127.0.0.1:{h1_server.port}/echo")
    assert rc == 0, err
    assert out_file.read_bytes() == payload
    method, path, headers, _ = h1_server.requests[-1]
    assert (method, path) == ("PUT", "/echo")
    assert headers["X-Test"] == "one" and headers["X-Other"] == "two"
    assert headers["Content-Length"] == str(len(payload))
    rc, out, err = run(capsys, "http", "-i", "-d", "hi there", f"http://127.0.0.1:{h1_server.port}/echo")
    assert rc == 0
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200") and "X-Method: POST" in head
    assert body == "hi there"


def test_verbose_shows_request_response_and_timings(capsys: pytest.CaptureFixture[str],
                                                    h1_server: Any) -> None:  # noqa: F811
    rc, out, err = run(capsys, "http", "-v", f"http://127.0.0.1:{h1_server.port}/size/10")
    assert rc == 0
    assert out == "a" * 10
    assert "> GET /size/10 HTTP/1.1" in err and "< HTTP/1.1 200" in err
    assert "timings: dns" in err and "first byte" in err and "total" in err


def test_fail_on_http_error(capsys: pytest.CaptureFixture[str], h1_server: Any) -> None:  # noqa: F811
    rc, out, _ = run(capsys, "http", f"http://127.0.0.1:{h1_server.port}/missing")
    assert rc == 0 and out == "not found"  # like curl: an HTTP error status is still a response
    rc, _, err = run(capsys, "http", "--fail", f"http://127.0.0.1:{h1_server.port}/missing")
    assert rc == 22
    assert "HTTP 404" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "http", f"http://127.0.0.1:{free_port()}/")
    assert rc == 1 and out == ""
    assert "AWS_IO_SOCKET_CONNECTION_REFUSED" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))


@pytest.mark.parametrize("argv, needle", [
    (["ftp://127.0.0.1/"], "unsupported URL"),
    (["http:///nohost"], "no host"),
    (["-H", "no colon", "http://127.0.0.1:1/"], "bad header"),
    (["-d", "@/does/not/exist", "http://127.0.0.1:1/"], "no such file"),
    (["--cacert", "/does/not/exist", "https://127.0.0.1:1/"], "no such file"),
])
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, _, err = run(capsys, "http", *argv)
    assert rc == 2
    assert needle in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))


def test_https_http2_alpn_with_cacert(capsys: pytest.CaptureFixture[str], h2_tls: H2Server,
                                      pki: Any) -> None:  # noqa: F811
    rc, out, err = run(capsys, "http", "--http2", "-v", "--cacert", pki.ca_cert,
                       f"https://localhost:{h2_tls.port}/size/5000")
    assert rc == 0, err
    assert out == "b" * 5000
    assert "ALPN h2" in err and "TLSv1." in err and "Using HTTP/2" in err
    assert "< HTTP/2 200" in err


def test_https_untrusted_certificate_fails(capsys: pytest.CaptureFixture[str], h2_tls: H2Server) -> None:
    rc, out, err = run(capsys, "http", "--http2", f"https://localhost:{h2_tls.port}/size/1")
    assert rc == 1 and out == ""
    assert "AWS_IO_TLS" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))


def test_https_insecure(capsys: pytest.CaptureFixture[str], h1_tls: int) -> None:
    rc, out, err = run(capsys, "http", "-k", "-v", f"https://127.0.0.1:{h1_tls}/")
    assert rc == 0, err
    assert out == "hello over tls\n"
    assert "ALPN http/1.1" in err


def test_https_http2_falls_back_to_http1(capsys: pytest.CaptureFixture[str], h1_tls: int, pki: Any) -> None:  # noqa: F811
    rc, out, err = run(capsys, "http", "--http2", "-v", "--cacert", pki.ca_cert, f"https://localhost:{h1_tls}/")
    assert rc == 0, err
    assert out == "hello over tls\n" and "Using HTTP/1.1" in err


def test_cleartext_http2_prior_knowledge(capsys: pytest.CaptureFixture[str]) -> None:
    srv = H2Server()
    try:
        rc, out, err = run(capsys, "http", "--http2", "-X", "POST", "-d", "xyz", f"http://127.0.0.1:{srv.port}/echo")
        assert rc == 0, err
        assert out == "xyz"
        assert srv.requests[-1][":method"] == "POST"
    finally:
        srv.stop()


def test_sigv4_signs_with_environment_credentials(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                  h1_server: Any) -> None:  # noqa: F811
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLITEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cli-secret-never-shown")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    rc, out, err = run(capsys, "http", "-v", "--sigv4", "execute-api", "--region", "eu-west-3",
                       f"http://127.0.0.1:{h1_server.port}/headers")
    assert rc == 0, err
    assert "authorization: AWS4-HMAC-SHA256 Credential=AKIDCLITEST/" in out
    assert "/eu-west-3/execute-api/aws4_request" in out
    assert "x-amz-date:" in out
    assert "> Authorization: <redacted>" in err
    assert "cli-secret-never-shown" not in err + out


def test_proxy_from_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                h1_server: Any) -> None:  # noqa: F811
    """A forwarding proxy named by $http_proxy receives the request (the test server acts as
    the proxy and sees the absolute URI)."""
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{h1_server.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    rc, _, err = run(capsys, "http", "-v", "http://example.invalid/echo")
    assert "Using proxy http://127.0.0.1" in err
    assert h1_server.requests[-1][1] == "http://example.invalid/echo"
    monkeypatch.setenv("no_proxy", "example.invalid")
    rc, _, err = run(capsys, "http", "http://example.invalid/echo")
    assert rc == 1 and "example.invalid" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))


def test_sigv4_without_credentials_fails_before_connecting(capsys: pytest.CaptureFixture[str], tmp_path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           h1_server: Any) -> None:  # noqa: F811
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    before = len(h1_server.requests)
    rc, out, err = run(capsys, "http", "--sigv4", "s3", f"http://127.0.0.1:{h1_server.port}/echo")
    assert rc == 1 and out == ""
    assert "no AWS credentials" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))
    assert len(h1_server.requests) == before


class _FakeTty:
    """A text stream that claims to be a terminal (the progress bar draws only on one)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_output_file_progress_bar_on_a_terminal(tmp_path, h1_server: Any) -> None:  # noqa: F811
    import io

    err = _FakeTty()
    out = io.StringIO()
    target = tmp_path / "download.bin"
    rc = main(["http", "-o", str(target), f"http://127.0.0.1:{h1_server.port}/size/300000"], stdout=out, stderr=err)
    assert rc == 0
    assert target.read_bytes() == b"a" * 300000
    drawn = "".join(err.parts)
    assert "100.0%" in drawn and "293.0 KiB/293.0 KiB" in drawn
    assert out.getvalue() == ""


def test_tls_through_a_connect_tunnel(capsys: pytest.CaptureFixture[str], tmp_path, h2_tls: H2Server,
                                      pki: Any) -> None:  # noqa: F811
    from conftest import require_binary
    from helpers.http_servers import Tinyproxy

    proxy = Tinyproxy(require_binary("tinyproxy", "/usr/bin/tinyproxy"), str(tmp_path), free_port())
    try:
        rc, out, err = run(capsys, "http", "-v", "--http2", "--cacert", pki.ca_cert,
                           "--proxy", f"http://127.0.0.1:{proxy.port}", f"https://localhost:{h2_tls.port}/size/64")
        assert rc == 0, err
        assert out == "b" * 64
        assert "Using proxy" in err and "ALPN h2" in err
        with open(proxy.log) as f:
            assert "CONNECT" in f.read()
    finally:
        proxy.stop()



@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_write_error_is_reported(capsys: pytest.CaptureFixture[str], h1_server: Any) -> None:  # noqa: F811
    rc, _, err = run(capsys, "http", "-o", "/dev/full", f"http://127.0.0.1:{h1_server.port}/size/2000000")
    assert rc == 1
    assert "cannot write /dev/full" in one_line_error(err, "crtpy http", ignore=("*", ">", "<"))
